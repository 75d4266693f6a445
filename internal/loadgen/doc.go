// Package loadgen generates synthetic agent traffic when no capture of real
// traffic exists. It turns a Fleet (profiles of agents with arrival rates,
// priority, model and operation mixes, prompt sizes and a repeat ratio)
// into capture.Records in time order, so the result is a capture like any
// other: written as JSON lines for `herd replay`, or published into
// HERD_CAPTURE.
//
// The generator is pure: the same fleet, Options and seed give the same
// records, byte for byte. Nothing in it reads the clock or does I/O; Write
// is the thin writer around it.
//
// # Traffic model
//
// Each profile has Agents agents; each agent runs Concurrency consumers. A
// consumer is one independent stream of requests (one loop in an agent that
// takes tasks and calls a model), arriving as a Poisson process at Rate
// requests per second. So a profile sends Agents × Concurrency × Rate
// requests per second, spread uniformly over its agents, and the sum of
// Agents × Concurrency over the fleet is its number of concurrent
// consumers. The consumers describe how the arrivals were produced, not a
// cap on requests in flight: a capture is replayed open loop.
//
// Each request draws its priority, model and operation from the profile's
// weights and its prompt length in words from a lognormal distribution
// (Median words, Sigma the standard deviation of the log, clipped to
// [Min, Max]). With probability RepeatRatio a request instead repeats the
// body of an earlier request of the same profile (or, with RepeatScope
// "agent", of the same agent): the same bytes, so herd's cache or
// coalescing can answer it. Only requests at temperature 0 (and
// embeddings) are ever repeated; a share Sampled of fresh generate and
// chat requests is sampled at Temperature instead and never repeats. When a
// repeat is drawn before any earlier request exists, it is owed and the
// next request that can repeat does, so the share holds over a run.
//
// Fresh prompts are unique: each starts with "[<agent> #<n>]".
//
// # The default fleet
//
// DefaultFleet is the fleet herd was built for: 69 agents with 174
// consumers in three profiles.
//
//	profile            agents  consumers  rate/consumer  priority (h/n/l)  models                           ops                      prompt words (median)
//	high-throughput    40      2 each     0.1/s          .10/.85/.05       llama3.2:3b .7, herd-tiny .3     generate .6, chat .4     40
//	complex-reasoning   9      6 each     0.005/s        .80/.20/0         deepseek-r1:8b, num_ctx 8192     chat .7, generate .3     600
//	utility            20      2 each     0.05/s         0/.20/.80         tinyllama                        embed .6, generate .4    20
//
// About 10 requests a second in all; scale with Options.RateScale.
//
// # Profile files
//
// A fleet file is YAML (JSON is read the same way). Durations are Go
// durations ("2m"). Unknown keys are refused. Every key:
//
//	repeat_ratio: 0.3            # share of repeats for profiles that set none (default 0.3)
//	profiles:
//	  - name: high-throughput    # required; agents are <name>-01, <name>-02, ... (1-100 of A-Z a-z 0-9 _ = -)
//	    agents: 40               # required, >= 1
//	    concurrency: 2           # consumers per agent (default 1)
//	    rate: 0.1                # requests per second of one consumer, required > 0
//	    priorities: {high: 0.1, normal: 0.85, low: 0.05}   # weights (default all normal)
//	    models: {"llama3.2:3b": 0.7, herd-tiny: 0.3}      # weights, required
//	    ops: {generate: 0.6, chat: 0.4}                    # generate, chat, embed weights (default generate)
//	    prompt_words: {median: 40, sigma: 0.6, min: 3, max: 400}  # median required; min default 1, max default 10 x median
//	    num_predict: 64          # options.num_predict of generate and chat (0: not set)
//	    num_ctx: 0               # options.num_ctx, 0 or 256..1048576 (0: herd's per-model default)
//	    system: ""               # system prompt of generate and chat (default none)
//	    repeat_ratio: 0.3        # overrides the fleet's, 0 <= r < 1
//	    repeat_scope: profile    # profile (default) or agent: whose earlier requests are repeated
//	    sampled: 0               # share of fresh generate/chat requests at `temperature` (never repeated)
//	    temperature: 0           # temperature of sampled requests, > 0 when sampled > 0
//	    timeout: 0s              # Herd-Timeout header of every request (0: none)
//
// `herd loadgen --print-profile` prints the default fleet in this format.
package loadgen
