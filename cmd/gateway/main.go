// Command gateway serves herd's HTTP doors, Ollama's API and the OpenAI
// API, against a NATS server: each call is an ask on herd's ask door. It
// keeps no state, so any number of gateways can run behind a load
// balancer. `herd up` runs one in its own process.
package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/gateway"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/stack"
)

func main() { cli.Execute(newCommand()) }

func newCommand() *cobra.Command {
	var path string
	cmd := cli.NewService("gateway", "Serve herd's HTTP doors (Ollama's API, the OpenAI API) against a NATS server",
		`gateway serves Ollama's HTTP API (/api/...) and the OpenAI API (/v1/...) on
--listen and asks herd for each call over NATS (herd.ask.<priority>.<agent>):
existing Ollama and OpenAI clients use herd by changing one URL. API keys
(api.keys, api.keys_file) map to an agent and a priority ceiling; logged in
as a NATS user (nats.user gateway, HERD_NATS__USER and HERD_NATS__PASSWORD,
or nats.creds) it requires a key on every call, as its user may act only as
the agents its keys name (herd auth config --gateway-agent). Settings
come from the configuration file, HERD_* variables and these flags;
/metrics, /healthz and /readyz are served on --http. A port that cannot be
bound is an error at start.`)
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.String("nats", "", "NATS URL (nats.url)")
	f.String("listen", "", "HTTP doors listen address (api.listen); default "+gateway.DefaultListen)
	f.String("http", "", "metrics and health listen address (http.listen)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url", "listen": "api.listen", "http": "http.listen"})
		if err != nil {
			return cli.Usage(err)
		}
		defer func() { _ = log.Sync() }()
		if c.API.Listen == "" {
			return cli.Usage(fmt.Errorf("api.listen is empty: nothing to serve"))
		}
		keys, err := gateway.LoadKeys(c.API, os.Getenv, os.ReadFile)
		if err != nil {
			return cli.Usage(err)
		}
		if c.NATS.User != "" || c.NATS.Creds != "" {
			// Under access control (nats.user gateway, HERD_NATS__USER):
			// its user acts only as its keys' agents, so a call without a
			// key is 401.
			keys = keys.Require()
		}
		ln, err := net.Listen("tcp", c.API.Listen)
		if err != nil {
			return fmt.Errorf("api listen: %w", err)
		}
		hs, err := ops.Listen(c.HTTP.Listen)
		if err != nil {
			_ = ln.Close()
			return err
		}
		return cli.Run(func(ctx context.Context) error {
			nc, err := stack.Connect(c, "herd-gateway")
			if err != nil {
				return err
			}
			defer nc.Close()
			reg := ops.NewRegistry()
			gw, err := gateway.New(c.API, nc, keys, log, reg)
			if err != nil {
				return err
			}
			h := ops.Handler(reg, stack.Ready(nc))
			return cli.Together(ctx,
				func(ctx context.Context) error { return gw.Serve(ctx, ln) },
				func(ctx context.Context) error { return hs.Serve(ctx, h, log) })
		})
	}
	return cmd
}
