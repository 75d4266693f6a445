package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/alerts"
	"github.com/sutazai/herd/internal/cli"
)

func init() { register(newAlerts) }

func newAlerts() *cobra.Command {
	var path, out string
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Print Prometheus alert rules generated from the configuration's service-level targets",
		Long: `Alerts renders herd's Prometheus alert rules: latency (p95, p99) and error-rate
rules per priority from optimizer.slo, and the queue, Ollama, breaker,
dead-letter and service-down rules. deploy/prometheus/alerts.yml is its output
for the default configuration; regenerate it after changing the targets.`,
		Example: `  herd alerts --out deploy/prometheus/alerts.yml
  herd alerts --config prod.yaml > alerts.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := cli.Load(cmd.Flags(), path, nil)
			if err != nil {
				return usageError(err)
			}
			_ = log.Sync()
			rules := alerts.Render(c.Optimizer.SLO)
			if out == "" {
				_, err := cmd.OutOrStdout().Write(rules)
				return err
			}
			if err := os.WriteFile(out, rules, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the rules to this file instead of stdout")
	return cmd
}
