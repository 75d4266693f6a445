// Package warm fills herd's answer cache from captured traffic before
// agents ask for it (`herd cache warm`): after a deploy, a model update
// (a new digest makes new keys) or a cache flush.
//
// Select picks, from a capture, the requests whose answers herd caches
// (reproducible: embeddings, temperature 0 or a fixed seed; not
// streaming; not Herd-Cache: off), once each; Run sends them through the
// ask door at low priority, so live traffic goes first, and counts what
// happened to each: added (Herd-Cache: miss, Ollama ran it and herd
// stored the answer), already cached (hit, or coalesced with an identical
// request running anyway), failed by code; and what it cost, from the
// answers' own figures (Ollama's total_duration, prompt and eval tokens).
package warm
