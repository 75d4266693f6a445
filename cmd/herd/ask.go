package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/stack"
)

func newAsk() *cobra.Command {
	var (
		path, natsURL, priority, agent, model, op, options string
		system, format, cache                              string
		headers                                            []string
		stream, raw, verbose                               bool
		timeout                                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ask [flags] [PROMPT... | -]",
		Short: "Send one request through herd and print the answer",
		Long: `Ask sends one request through herd and prints the answer.

The prompt is the arguments joined by spaces; a "-" among them stands for
standard input, and with no arguments at all the prompt is read from standard
input (a pipe or a file), like ollama run. Trailing newlines are dropped.

--model defaults to the configuration's model: the first of models[] kept
warm (priority: true), else the first listed; herd-tiny with the shipped
config/herd.yaml.

--header K=V (repeatable) sets one of the request headers herd reads
(docs/protocol.md): Nats-Msg-Id, Herd-Timeout, Herd-Deadline, Herd-Cache,
Herd-Cache-TTL. Names are case-insensitive; Herd-Timeout is --timeout.

The exit code is 0 for an answer, 1 when herd answered an error or could not
be reached, and 64 when the command line or the configuration is wrong.`,
		Example: `  herd ask "why is the sky blue?"
  herd ask --model herd-tiny --priority high --stream "tell me a story"
  git diff | herd ask --system "You review code. Be brief." "review this:" -
  herd ask --format json --cache off "three colours as a JSON list"
  herd ask --header Nats-Msg-Id=job-42 --header Herd-Cache-TTL=24h "summarize the plan"
  herd ask --op embed "a sentence to embed" --json`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return usageError(err)
			}
			defer func() { _ = log.Sync() }()
			callOpts, err := askOptions(op, priority, cache, system, format, headers, &timeout)
			if err != nil {
				return usageError(err)
			}
			var opts map[string]any
			if options != "" {
				if err := json.Unmarshal([]byte(options), &opts); err != nil {
					return usageError(fmt.Errorf("--options must be a JSON object: %w", err))
				}
			}
			var formatJSON json.RawMessage
			if format != "" {
				formatJSON = askFormat(format)
			}
			if !cmd.Flags().Changed("model") {
				model = defaultModel(c)
			}
			prompt, err := readPrompt(args, cmd.InOrStdin())
			if err != nil {
				return err
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
				return usageError(err)
			}
			defer func() { _ = hc.Close() }()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout+5*time.Second)
			defer cancel()
			callOpts = append(callOpts, client.Timeout(timeout))
			out := cmd.OutOrStdout()
			var meta *client.Meta
			var body any
			switch op {
			case "generate":
				req := &api.GenerateRequest{Model: model, Prompt: prompt, System: system, Format: formatJSON, Options: opts}
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
				var msgs []api.Message
				if system != "" {
					msgs = append(msgs, api.Message{Role: "system", Content: system})
				}
				msgs = append(msgs, api.Message{Role: "user", Content: prompt})
				req := &api.ChatRequest{Model: model, Messages: msgs, Format: formatJSON, Options: opts}
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
			}
			if raw && body != nil {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(body)
			}
			if verbose && meta != nil {
				line := fmt.Sprintf("request %s: status %d, cache %s, queue %dms, total %dms, batch %d, worker %s",
					meta.RequestID, meta.Status, meta.Cache, meta.QueueMs, meta.TotalMs, meta.BatchSize, meta.Worker)
				if meta.Model != "" {
					line += ", model " + meta.Model
				}
				fmt.Fprintln(cmd.ErrOrStderr(), line)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.StringVar(&priority, "priority", "normal", "high, normal or low")
	f.StringVar(&agent, "agent", "cli", "agent name")
	f.StringVar(&model, "model", "", "model (default: the configuration's first warm model, else its first; \"auto\" lets herd choose)")
	f.StringVar(&op, "op", "generate", "generate, chat or embed")
	f.StringVar(&options, "options", "", `Ollama options as JSON, e.g. '{"temperature":0}'`)
	f.StringVar(&system, "system", "", "system prompt (generate and chat)")
	f.StringVar(&format, "format", "", `answer format: json, or a JSON schema object (generate and chat)`)
	f.StringVar(&cache, "cache", "", "cache policy: auto (default), off (no cache, no coalescing) or refresh (run and store)")
	f.StringArrayVar(&headers, "header", nil, "request header K=V (repeatable): Nats-Msg-Id, Herd-Timeout, Herd-Deadline, Herd-Cache, Herd-Cache-TTL")
	f.BoolVar(&stream, "stream", false, "print chunks as they arrive")
	f.BoolVar(&raw, "json", false, "print Ollama's JSON answer")
	f.BoolVarP(&verbose, "verbose", "v", false, "print herd's metadata (cache, latency, worker, chosen model) to stderr")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long herd may take")
	return cmd
}
