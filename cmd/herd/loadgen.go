package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/loadgen"
	"github.com/sutazai/herd/internal/wire"
)

func init() { register(newLoadgen) }

func newLoadgen() *cobra.Command {
	var (
		path, natsURL, profile, out, models, startAt string
		duration                                     time.Duration
		seed                                         uint64
		rateScale, repeatRatio                       float64
		maxRequests                                  int
		toStream, printProfile                       bool
	)
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Generate synthetic agent traffic as a capture, for herd replay",
		Long: `Generate the traffic of a fleet of agents when no capture of real traffic
exists, as a capture: JSON lines of capture records (--out, .gz gzipped) that
herd replay plays, or records in HERD_CAPTURE (--stream). Record times start
now (or --start); the same fleet, flags and --seed give the same records.

The default fleet has 69 agents in three profiles with 174 consumers:
high-throughput (40 agents, mostly normal priority, short prompts,
llama3.2:3b and herd-tiny), complex-reasoning (9 agents, high priority, long
prompts, num_ctx 8192, deepseek-r1:8b) and utility (20 agents, low priority,
embeddings and short generations, tinyllama). A consumer is one stream of
requests in an agent, arriving as a Poisson process at the profile's rate;
each agent runs "concurrency" of them. A share of requests (repeat_ratio,
0.3) repeats an earlier body of the same profile exactly, at temperature 0,
so herd's cache and coalescing see real repeats.

--profile reads a fleet from a YAML or JSON file; --print-profile prints the
default one to start from. The format (unknown keys are refused):

  repeat_ratio: 0.3            # default share of repeats
  profiles:
    - name: high-throughput    # agents are <name>-01, <name>-02, ...
      agents: 40               # required
      concurrency: 2           # consumers per agent (default 1)
      rate: 0.1                # requests/s of one consumer (required)
      priorities: {high: 0.1, normal: 0.85, low: 0.05}  # weights (default normal)
      models: {"llama3.2:3b": 0.7, herd-tiny: 0.3}     # weights (required)
      ops: {generate: 0.6, chat: 0.4}                   # generate/chat/embed weights
      prompt_words: {median: 40, sigma: 0.6, min: 3, max: 400}  # lognormal
      num_predict: 64          # options.num_predict (0: not set)
      num_ctx: 0               # options.num_ctx (0: herd's per-model value)
      system: ""               # system prompt
      repeat_ratio: 0.3        # this profile's share of repeats
      repeat_scope: profile    # or agent: whose earlier bodies repeat
      sampled: 0               # share of fresh requests at temperature (never repeated)
      temperature: 0           # > 0 when sampled > 0
      timeout: 0s              # Herd-Timeout on every request

--models maps the fleet's models to ones you have: "herd-tiny" maps all of
them, "llama3.2:3b=herd-tiny,*=tinyllama" one and then the rest.`,
		Example: `  herd loadgen --duration 60s --out fleet.jsonl
  herd loadgen --duration 10m --rate-scale 0.2 --models herd-tiny --seed 7 --out fleet.jsonl.gz
  herd loadgen --print-profile > fleet.yaml; herd loadgen --profile fleet.yaml --duration 5m --stream`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fleet := loadgen.DefaultFleet()
			if profile != "" {
				f, err := loadgen.Load(profile)
				if err != nil {
					return &exitError{2, err}
				}
				fleet = f
			}
			if models != "" {
				m, err := loadgen.ParseModelMap(models)
				if err != nil {
					return &exitError{2, err}
				}
				if fleet, err = fleet.MapModels(m); err != nil {
					return &exitError{2, err}
				}
			}
			if cmd.Flags().Changed("repeat-ratio") {
				for i := range fleet.Profiles {
					r := repeatRatio
					fleet.Profiles[i].RepeatRatio = &r
				}
				if err := fleet.Validate(); err != nil {
					return &exitError{2, fmt.Errorf("--repeat-ratio: %w", err)}
				}
			}
			if printProfile {
				b, err := fleet.Marshal()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if (out == "") == !toStream {
				return &exitError{2, fmt.Errorf("give one of --out FILE and --stream")}
			}
			start := time.Now()
			if startAt != "" {
				t, err := time.Parse(time.RFC3339Nano, startAt)
				if err != nil {
					return &exitError{2, fmt.Errorf("--start %q is not an RFC 3339 time", startAt)}
				}
				start = t
			}
			g, err := loadgen.New(fleet, loadgen.Options{
				Seed: seed, Start: start, Duration: duration, RateScale: rateScale, MaxRequests: maxRequests,
			})
			if err != nil {
				return &exitError{2, err}
			}
			stderr := cmd.ErrOrStderr()
			prog := newProgress(stderr, "generated")
			dest := out
			if toStream {
				s, err := connect(cmd, path, "herd-loadgen")
				if err != nil {
					return err
				}
				defer s.nc.Close()
				ctx := cmd.Context()
				if _, err := s.captureStream(ctx); err != nil {
					return err
				}
				pub := capture.NewPublisher(s.js, 0)
				if err := loadgen.Publish(ctx, g, pub, prog.update); err != nil {
					return fmt.Errorf("loadgen: %w (%d records published)", err, pub.Acked())
				}
				dest = wire.StreamCapture
			} else {
				w, err := capture.CreateFile(out, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				_, err = loadgen.Write(w, g, prog.update)
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("loadgen: write %s: %w", out, err)
				}
				if out == "-" {
					dest = "stdout"
				}
			}
			fmt.Fprintln(stderr, summary(fleet, g.Stats(), duration, dest))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file, for --stream (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL, for --stream (nats.url; default nats://127.0.0.1:4222)")
	f.StringVar(&profile, "profile", "", "fleet file (YAML or JSON); default the built-in 69-agent fleet")
	f.StringVarP(&out, "out", "o", "", `capture file to write ("-" is stdout; .gz is gzipped)`)
	f.BoolVar(&toStream, "stream", false, "publish the records into HERD_CAPTURE instead of a file")
	f.DurationVar(&duration, "duration", time.Minute, "how long the generated traffic lasts")
	f.Uint64Var(&seed, "seed", 1, "random seed: the same seed gives the same traffic")
	f.Float64Var(&rateScale, "rate-scale", 1, "multiply every profile's arrival rate")
	f.Float64Var(&repeatRatio, "repeat-ratio", 0, "share of requests that repeat an earlier one, for every profile (default: each profile's own; 0.3 in the built-in fleet)")
	f.StringVar(&models, "models", "", `map the fleet's models: "herd-tiny" (all) or "from=to,...,*=to"`)
	f.StringVar(&startAt, "start", "", "when the traffic starts: offset zero of the record times (RFC 3339; default now)")
	f.IntVar(&maxRequests, "max-requests", 0, "stop after this many requests (0: no limit)")
	f.BoolVar(&printProfile, "print-profile", false, "print the fleet (after --profile, --models, --repeat-ratio) as YAML and exit")
	return cmd
}

// summary describes what loadgen wrote.
func summary(f loadgen.Fleet, st loadgen.Stats, d time.Duration, dest string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wrote %d requests from %d agents in %d profiles (%d consumers) over %s to %s",
		st.Requests, f.Agents(), len(f.Profiles), f.Consumers(), d, dest)
	if st.Requests == 0 {
		return b.String()
	}
	pct := func(n int) float64 { return 100 * float64(n) / float64(st.Requests) }
	fmt.Fprintf(&b, ": high %.0f%%, normal %.0f%%, low %.0f%%, repeats %.0f%%",
		pct(st.ByPriority[wire.High]), pct(st.ByPriority[wire.Normal]), pct(st.ByPriority[wire.Low]), pct(st.Repeats))
	return b.String()
}
