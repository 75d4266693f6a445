package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/gateway"
	"github.com/sutazai/herd/internal/stack"
)

func newUp() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run herd in one process: embedded NATS, dispatcher, worker, metrics",
		Long: `Run herd in one process: an embedded NATS server with JetStream on disk,
the streams, the dispatcher, a worker, /metrics, /healthz, /readyz and the
HTTP doors (Ollama's API and the OpenAI API on --api, 127.0.0.1:8090).
Prints a line with "ready" and the NATS URL once requests are accepted.
SIGINT or SIGTERM drains in-flight work and stops.

With --workers N (or auto) it runs N worker instances, each with its own
managed Ollama pinned to its own pool.cores_per_instance cores; auto
follows the optimizer's instances decision within pool.min_instances,
pool.max_instances and the cores, adding an instance under load and
draining one when idle.

With --auth every client logs in as a user of herd's roles
(deploy/nats/auth.conf, or --auth-file) and gets only that role's
permissions; the in-process services log in as dispatcher, worker and
optimizer. Passwords come from NATS_PASSWORD_<USER>; unset ones are
random (that user cannot log in).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{
				"nats-listen": "server.listen", "data": "server.data", "ollama": "ollama.url", "http": "http.listen",
				"api": "api.listen", "auth": "server.auth", "auth-file": "server.auth_file",
				"workers": "pool.instances",
			})
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = log.Sync() }()
			return cli.Run(func(ctx context.Context) error {
				return stack.Up(ctx, c, log, func(url string) {
					fmt.Fprintf(cmd.OutOrStdout(), "herd ready on %s (http %s, api %s)\n", url, c.HTTP.Listen, c.API.Listen)
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.String("nats-listen", "127.0.0.1:4222", "embedded NATS listen address (server.listen)")
	f.String("data", "data", "directory for JetStream and managed Ollama state (server.data)")
	f.String("ollama", "", "Ollama URL (ollama.url); default OLLAMA_HOST")
	f.String("http", "127.0.0.1:8080", "metrics and health listen address (http.listen)")
	f.String("api", gateway.DefaultListen, "HTTP doors listen address: Ollama's API and the OpenAI API (api.listen); empty serves none")
	f.String("workers", "1", "worker instances, each with its own managed Ollama on its own cores (pool.instances): a number, or auto to follow the optimizer's instances decision")
	f.Bool("auth", false, "require users and permissions (server.auth); see docs/protocol.md, Permissions")
	f.String("auth-file", "", "NATS configuration with herd's accounts and users (server.auth_file); default the built-in roles")
	return cmd
}
