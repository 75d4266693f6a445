package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/auth"
)

func init() { register(newAuth) }

func newAuth() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Print herd's NATS access-control configuration",
		Long: `herd's roles on NATS (docs/protocol.md, "Permissions"): one user for each
agent, dispatcher, worker, optimizer, the HTTP gateway, a read-only operator
and an admin. Agents and the gateway are in the AGENTS account and the
operator in OPS, apart from herd's streams in HERD, which exports to them
what they may call.
"herd auth config" prints the server configuration (deploy/nats/auth.conf);
"herd auth agent NAME" prints the user entry that lets one more agent in.`,
	}
	var agents, gatewayAgents []string
	config := &cobra.Command{
		Use:   "config",
		Short: "Print the server configuration with the service roles and agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("gateway-agent") {
				gatewayAgents = agents
			}
			s, err := auth.RenderWith(agents, gatewayAgents)
			if err != nil {
				return &exitError{2, err}
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), s)
			return err
		},
	}
	config.Flags().StringSliceVar(&agents, "agent", auth.ExampleAgents, "agents to declare (repeat or comma-separate)")
	config.Flags().StringSliceVar(&gatewayAgents, "gateway-agent", nil, "agents the HTTP gateway's API keys name, the only ones its user may act as (default: the --agent list)")
	var hashed bool
	agent := &cobra.Command{
		Use:   "agent NAME",
		Short: "Print the user entry for one agent, for the AGENTS account's users list",
		Example: `  herd auth agent planner                      # password from ` + auth.PasswordEnv("planner") + ` at server start
  head -c 24 /dev/urandom | base64 | tr -d /+= > planner.pw
  herd auth agent planner --hashed < planner.pw  # bcrypt hash in the entry: add it with a reload`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := auth.AgentBlock(args[0])
			if hashed {
				line, rerr := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if rerr != nil && rerr != io.EOF {
					return rerr
				}
				s, err = auth.AgentBlockHashed(args[0], strings.TrimRight(line, "\r\n"))
			}
			if err != nil {
				return &exitError{2, err}
			}
			out := cmd.OutOrStdout()
			if !hashed {
				fmt.Fprintf(out, "      # password: environment variable %s\n", auth.PasswordEnv(args[0]))
			}
			fmt.Fprintf(out, "      # connect with inbox prefix %s\n", auth.AgentInbox(args[0]))
			_, err = fmt.Fprint(out, s)
			return err
		},
	}
	agent.Flags().BoolVar(&hashed, "hashed", false, "read the password from stdin and write its bcrypt hash into the entry")
	cmd.AddCommand(config, agent)
	return cmd
}
