// Package testmodel generates tiny, deterministic, random-weight language
// models that a real Ollama server can import and run.
//
// The generated file is a GGUF (version 3) model of the "llama"
// architecture with all tensors stored as F32 and a small SentencePiece
// ("llama") tokenizer embedded in its metadata. The weights are random but
// reproducible: [Write] produces the same bytes for the same [Size] on every
// run and every platform, so the model's output at temperature 0 is stable
// and tests can rely on it.
//
// The model never emits its special tokens (<unk>, <s>, </s>) or raw byte
// tokens: a constant channel in the residual stream drives their logits far
// negative. Generation therefore runs until num_predict (or the context
// limit) instead of stopping early, which makes eval counts predictable.
// The Modelfile written by [WriteDir] sets num_predict to
// [DefaultNumPredict] so a request that forgets to set it cannot run away.
//
// Two sizes are provided: [Tiny], which loads in a fraction of a second and
// generates hundreds of tokens per second on a CPU, and [Slow], which is
// several times slower and is meant for keeping an Ollama server busy on
// purpose.
//
// Typical use:
//
//	modelfile, err := testmodel.WriteDir(dir, testmodel.Tiny)
//	// then: OLLAMA_HOST=... ollama create herd-tiny -f modelfile
package testmodel
