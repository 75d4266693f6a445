// Package modelbench benchmarks models through herd: `herd bench`.
//
// For each model it sends one request alone (the first call, whose
// load_duration is the model's load time when it was not loaded), then a
// profile's number of requests with its concurrency (quick 20×5, standard
// 100×10, comprehensive 500×20), all with the cache off so that Ollama
// really runs every one. From the answers it reports latency percentiles
// (as the caller sees them), throughput, Ollama's decode rate
// (Σ eval_count / Σ eval_duration), load time and errors by herd's error
// code. A prompt suite (YAML, see ParseSuite and config/prompts.yaml) names
// the load prompts and quality cases, each with what its answer must hold:
// substrings, regular expressions, valid JSON; their pass rate is reported
// per model with the failures.
//
// Every result is kept as one message in the HERD_BENCH stream on
// herd.bench.<encoded model>.<profile> (Store), so the previous run of the
// same model and profile is one GetLastMsgForSubject away; Compare gives
// the changes against it and History lists past runs.
//
// The pure parts (Summarize, Compare, Expect.Check, the profiles) do no
// I/O; Runner and Store are thin shells around the herd client and
// JetStream.
package modelbench
