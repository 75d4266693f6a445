package modelbench

import (
	"math"
	"slices"
	"time"
)

// Sample is the outcome of one measured request.
type Sample struct {
	// LatencyMs is from just before the request was sent until its answer
	// (or error) arrived, in milliseconds.
	LatencyMs float64 `json:"latency_ms"`
	// Code is herd's error code for a failed request ("timeout" when the
	// bench gave up waiting, "client" for any other failure before an
	// answer); empty for an answer.
	Code string `json:"code,omitempty"`
	// Error is the error message of a failed request.
	Error string `json:"error,omitempty"`
	// QueueMs is herd's Herd-Queue-Ms: from stored to started.
	QueueMs int64 `json:"queue_ms,omitempty"`
	// EvalCount and EvalMs are Ollama's eval_count and eval_duration: the
	// generated tokens and the time spent generating them.
	EvalCount int     `json:"eval_count,omitempty"`
	EvalMs    float64 `json:"eval_ms,omitempty"`
	// PromptEvalCount and PromptEvalMs are Ollama's prompt_eval_count and
	// prompt_eval_duration.
	PromptEvalCount int     `json:"prompt_eval_count,omitempty"`
	PromptEvalMs    float64 `json:"prompt_eval_ms,omitempty"`
	// LoadMs is Ollama's load_duration: the time it took to load the model
	// (near zero when it was loaded already).
	LoadMs float64 `json:"load_ms,omitempty"`
}

// Latency holds latency percentiles in milliseconds (nearest rank).
type Latency struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Figures are what Summarize computes from the measured requests.
type Figures struct {
	// OK counts the answered requests, Errors the failed ones by code.
	OK     int            `json:"ok"`
	Errors map[string]int `json:"errors,omitempty"`
	// ErrorExamples holds the first error message seen for each code.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// ErrorRate is failed / sent, from 0 to 1.
	ErrorRate float64 `json:"error_rate"`
	// Latency is over the answered requests only (a fast failure would
	// otherwise look like good latency).
	Latency Latency `json:"latency_ms"`
	// Throughput is answered requests per second of wall time.
	Throughput float64 `json:"throughput_rps"`
	// TokensPerSec is Ollama's decode rate: Σ eval_count / Σ eval_duration
	// over the answered requests.
	TokensPerSec float64 `json:"tokens_per_s"`
	// PromptTokensPerSec is Σ prompt_eval_count / Σ prompt_eval_duration.
	PromptTokensPerSec float64 `json:"prompt_tokens_per_s"`
	// EvalTokens is Σ eval_count.
	EvalTokens int `json:"eval_tokens"`
	// LoadMaxMs is the largest load_duration seen.
	LoadMaxMs float64 `json:"load_max_ms"`
	// QueueMeanMs is the mean time the answered requests waited in herd.
	QueueMeanMs float64 `json:"queue_mean_ms"`
}

// Summarize computes the figures of samples that took wall time in all.
// It is pure.
func Summarize(samples []Sample, wall time.Duration) Figures {
	var (
		f                    Figures
		lat                  []float64
		evalN, promptN       int
		evalMs, promptMs, qs float64
	)
	for _, s := range samples {
		f.LoadMaxMs = max(f.LoadMaxMs, s.LoadMs)
		if s.Code != "" {
			if f.Errors == nil {
				f.Errors, f.ErrorExamples = map[string]int{}, map[string]string{}
			}
			f.Errors[s.Code]++
			if _, ok := f.ErrorExamples[s.Code]; !ok {
				f.ErrorExamples[s.Code] = s.Error
			}
			continue
		}
		f.OK++
		lat = append(lat, s.LatencyMs)
		evalN += s.EvalCount
		evalMs += s.EvalMs
		promptN += s.PromptEvalCount
		promptMs += s.PromptEvalMs
		qs += float64(s.QueueMs)
	}
	if n := len(samples); n > 0 {
		f.ErrorRate = float64(n-f.OK) / float64(n)
	}
	f.Latency = Percentiles(lat)
	f.EvalTokens = evalN
	if wall > 0 {
		f.Throughput = float64(f.OK) / wall.Seconds()
	}
	if evalMs > 0 {
		f.TokensPerSec = float64(evalN) / (evalMs / 1000)
	}
	if promptMs > 0 {
		f.PromptTokensPerSec = float64(promptN) / (promptMs / 1000)
	}
	if f.OK > 0 {
		f.QueueMeanMs = qs / float64(f.OK)
	}
	return f
}

// Percentiles returns the nearest-rank percentiles, maximum and mean of
// values; zero for none. values is not modified. The samples of a bench
// are at most a few thousand, so they are kept and sorted exactly rather
// than approximated in a histogram.
func Percentiles(values []float64) Latency {
	if len(values) == 0 {
		return Latency{}
	}
	v := slices.Clone(values)
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return v[min(max(i, 0), len(v)-1)]
	}
	return Latency{P50: rank(0.50), P95: rank(0.95), P99: rank(0.99), Max: v[len(v)-1], Mean: sum / float64(len(v))}
}
