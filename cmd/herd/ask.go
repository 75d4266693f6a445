package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/wire"
)

func newAsk() *cobra.Command {
	var (
		path, natsURL, priority, agent, model, op, options string
		stream, raw, verbose                               bool
		timeout                                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ask [flags] PROMPT",
		Short: "Send one request through herd and print the answer",
		Example: `  herd ask "why is the sky blue?"
  herd ask --model herd-tiny --priority high --stream "tell me a story"
  herd ask --op embed "a sentence to embed" --json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = log.Sync() }()
			var opts map[string]any
			if options != "" {
				if err := json.Unmarshal([]byte(options), &opts); err != nil {
					return &exitError{2, fmt.Errorf("--options must be a JSON object: %w", err)}
				}
			}
			// nats.user, nats.password and nats.tls log in (access
			// control): the agent is then the user, with its inbox.
			nc, err := stack.Connect(c, "herd-ask", nats.MaxReconnects(0))
			if err != nil {
				return fmt.Errorf("%w (is `herd up` running?)", err)
			}
			defer nc.Close()
			copts := []client.Option{client.WithAgent(agent)}
			if c.NATS.User != "" {
				if !cmd.Flags().Changed("agent") {
					copts[0] = client.WithAgent(c.NATS.User)
				}
				copts = append(copts, client.WithInboxPrefix(nc.Opts.InboxPrefix))
			}
			hc, err := client.New(nc, copts...)
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = hc.Close() }()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout+5*time.Second)
			defer cancel()
			callOpts := []client.CallOption{client.At(wire.Priority(priority)), client.Timeout(timeout)}
			prompt := strings.Join(args, " ")
			out := cmd.OutOrStdout()
			var meta *client.Meta
			var body any
			switch op {
			case "generate":
				req := &api.GenerateRequest{Model: model, Prompt: prompt, Options: opts}
				if stream {
					meta, err = hc.GenerateStream(ctx, req, func(r api.GenerateResponse) error {
						_, err := io.WriteString(out, r.Response)
						return err
					}, callOpts...)
					fmt.Fprintln(out)
					break
				}
				var r *api.GenerateResponse
				r, meta, err = hc.Generate(ctx, req, callOpts...)
				if err == nil {
					body = r
					if !raw {
						fmt.Fprintln(out, r.Response)
					}
				}
			case "chat":
				req := &api.ChatRequest{Model: model, Messages: []api.Message{{Role: "user", Content: prompt}}, Options: opts}
				if stream {
					meta, err = hc.ChatStream(ctx, req, func(r api.ChatResponse) error {
						_, err := io.WriteString(out, r.Message.Content)
						return err
					}, callOpts...)
					fmt.Fprintln(out)
					break
				}
				var r *api.ChatResponse
				r, meta, err = hc.Chat(ctx, req, callOpts...)
				if err == nil {
					body = r
					if !raw {
						fmt.Fprintln(out, r.Message.Content)
					}
				}
			case "embed":
				var r *api.EmbedResponse
				r, meta, err = hc.Embed(ctx, &api.EmbedRequest{Model: model, Input: prompt, Options: opts}, callOpts...)
				if err == nil {
					body = r
					if !raw {
						for _, v := range r.Embeddings {
							fmt.Fprintf(out, "%d dimensions: %v\n", len(v), v[:min(len(v), 8)])
						}
					}
				}
			default:
				return &exitError{2, fmt.Errorf("--op %q is not generate, chat or embed", op)}
			}
			if raw && body != nil {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(body)
			}
			if verbose && meta != nil {
				fmt.Fprintf(os.Stderr, "request %s: status %d, cache %s, queue %dms, total %dms, batch %d, worker %s\n",
					meta.RequestID, meta.Status, meta.Cache, meta.QueueMs, meta.TotalMs, meta.BatchSize, meta.Worker)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.StringVar(&priority, "priority", "normal", "high, normal or low")
	f.StringVar(&agent, "agent", "cli", "agent name")
	f.StringVar(&model, "model", "herd-tiny", "model")
	f.StringVar(&op, "op", "generate", "generate, chat or embed")
	f.StringVar(&options, "options", "", `Ollama options as JSON, e.g. '{"temperature":0}'`)
	f.BoolVar(&stream, "stream", false, "print chunks as they arrive")
	f.BoolVar(&raw, "json", false, "print Ollama's JSON answer")
	f.BoolVarP(&verbose, "verbose", "v", false, "print herd's metadata (cache, latency, worker) to stderr")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long herd may take")
	return cmd
}
