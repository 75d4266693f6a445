// Package testmodel generates tiny, deterministic, random-weight language
// models that a real Ollama server can import and run.
//
// The generated file is a GGUF (version 3) model of the "llama"
// architecture, with F32 tensors (or F16 weight matrices, see [Size.F16])
// and a small SentencePiece ("llama") tokenizer of about 500 tokens
// embedded in its metadata. The weights are random but reproducible: [Write]
// produces the same bytes for the same [Size] on every run and every
// platform, so the model's output at temperature 0 is stable and tests can
// rely on it.
//
// The model never emits its special tokens (<unk>, <s>, </s>) or raw byte
// tokens, whose logits a constant channel in the residual stream drives far
// negative, and never emits two tokens with the same text in a row, which
// Ollama would take for a loop and abort after 30 repeats. Generation
// therefore always runs to num_predict (or the context limit) instead of
// stopping early, at any temperature, which makes eval counts predictable.
// The Modelfile written by [WriteDir] sets num_predict to
// [DefaultNumPredict] so a request that forgets to set it cannot run away.
//
// Two sizes are provided: [Tiny], which loads in a fraction of a second and
// generates thousands of tokens per second on one CPU thread, and [Slow],
// which is over 50 times slower and is meant for keeping an Ollama server
// busy on purpose. Both run on a single thread (see [Size.Threads]).
//
// Typical use:
//
//	modelfile, err := testmodel.WriteDir(dir, testmodel.Tiny)
//	// then: OLLAMA_HOST=... ollama create herd-tiny -f modelfile
package testmodel
