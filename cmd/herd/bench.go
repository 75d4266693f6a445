package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/modelbench"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/wire"
)

func init() { register(newBench) }

func newBench() *cobra.Command {
	var (
		path, natsURL, profile, suitePath, jsonPath, priority, agent string
		models                                                       []string
		requests, concurrency                                        int
		timeout                                                      time.Duration
		noStore                                                      bool
	)
	cmd := &cobra.Command{
		Use:   "bench [flags]",
		Short: "Benchmark models through herd: latency, throughput, tokens/s, load time, errors, quality",
		Long: `bench sends each model one request alone (its load_duration is the load time), then
a profile's requests with the cache off: quick (20 requests, 5 at a time), standard
(100, 10) or comprehensive (500, 20). The prompt suite (--suite) gives the load prompts
and quality cases. Each result is stored in the HERD_BENCH stream and compared with the
previous run of the same model and profile.`,
		Example: `  herd bench
  herd bench --model herd-tiny --profile standard --json bench.json
  herd bench history --model herd-tiny`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := modelbench.ProfileByName(profile, requests, concurrency)
			if err != nil {
				return &exitError{2, err}
			}
			suite, err := benchSuite(cmd.Flags().Changed("suite"), suitePath)
			if err != nil {
				return &exitError{2, err}
			}
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = log.Sync() }()
			nc, js, err := benchConnect(c, "herd-bench")
			if err != nil {
				return err
			}
			defer nc.Close()
			hc, err := client.New(nc, client.WithAgent(agent))
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = hc.Close() }()
			o := modelbench.Options{
				Config: modelbench.Config{Profile: p, Suite: suite, Priority: wire.Priority(priority), Timeout: timeout},
				Models: models, Progress: cmd.ErrOrStderr(),
			}
			return cli.Run(func(ctx context.Context) error {
				if !noStore {
					if o.Store, err = modelbench.OpenStore(ctx, js); err != nil {
						return err
					}
				}
				rep, err := modelbench.NewRunner(hc, js, log).Run(ctx, o)
				if rep != nil && len(rep.Results) > 0 {
					if werr := modelbench.WriteReport(cmd.OutOrStdout(), rep); werr != nil && err == nil {
						err = werr
					}
					if jsonPath != "" {
						if werr := benchWriteJSON(jsonPath, rep); werr != nil && err == nil {
							err = werr
						}
					}
				}
				if err == nil && rep != nil {
					for _, r := range rep.Results {
						if r.OK == 0 {
							return fmt.Errorf("%s: no request was answered", r.Model)
						}
					}
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.StringArrayVar(&models, "model", nil, "model to benchmark; repeat for several (default: every model the workers registered)")
	f.StringVar(&profile, "profile", modelbench.Quick.Name, "quick (20 requests, 5 at a time), standard (100, 10) or comprehensive (500, 20)")
	f.IntVar(&requests, "requests", 0, "requests per model instead of the profile's (the run is then profile custom-<requests>x<concurrency>)")
	f.IntVar(&concurrency, "concurrency", 0, "requests at once instead of the profile's")
	f.StringVar(&suitePath, "suite", modelbench.DefaultSuitePath, `prompt suite (YAML): load prompts and quality cases; "" for none`)
	f.StringVar(&jsonPath, "json", "", "also write the results, with every request's figures, to this JSON file")
	f.StringVar(&priority, "priority", string(wire.Normal), "high, normal or low")
	f.StringVar(&agent, "agent", "bench", "agent name of the requests")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long herd may take for one request")
	f.BoolVar(&noStore, "no-store", false, "neither store the results in HERD_BENCH nor compare them with the previous run")
	cmd.AddCommand(newBenchHistory())
	return cmd
}

func newBenchHistory() *cobra.Command {
	var (
		path, natsURL, model, profile string
		limit                         int
		asJSON                        bool
	)
	cmd := &cobra.Command{
		Use:   "history [flags]",
		Short: "List past bench runs stored in HERD_BENCH, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = log.Sync() }()
			nc, js, err := benchConnect(c, "herd-bench")
			if err != nil {
				return err
			}
			defer nc.Close()
			return cli.Run(func(ctx context.Context) error {
				st, err := modelbench.OpenStore(ctx, js)
				if err != nil {
					return err
				}
				runs, err := st.History(ctx, model, profile, limit)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(runs)
				}
				if len(runs) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "no stored bench runs")
					return nil
				}
				return modelbench.WriteHistory(cmd.OutOrStdout(), runs)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.StringVar(&model, "model", "", "only this model's runs (default every model)")
	f.StringVar(&profile, "profile", "", "only runs of this profile (default every profile)")
	f.IntVar(&limit, "limit", 0, "only the latest N runs (default all)")
	f.BoolVar(&asJSON, "json", false, "print the runs as JSON")
	return cmd
}

// benchSuite reads the prompt suite. The default file may be absent (herd
// bench run outside the repository): then the built-in load prompt is used
// and there are no quality cases. A file named with --suite must exist.
func benchSuite(named bool, path string) (*modelbench.Suite, error) {
	if path == "" {
		return modelbench.DefaultSuite(), nil
	}
	s, err := modelbench.LoadSuite(path)
	if !named && errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "herd bench: no %s; no quality cases (name one with --suite)\n", path)
		return modelbench.DefaultSuite(), nil
	}
	return s, err
}

// benchConnect connects to NATS and JetStream.
func benchConnect(c config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := stack.Connect(c, name, nats.MaxReconnects(0))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is `herd up` running?)", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// benchWriteJSON writes v to path as indented JSON.
func benchWriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
