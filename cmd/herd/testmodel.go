package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/testmodel"
)

func newTestModel() *cobra.Command {
	var dir, size string
	cmd := &cobra.Command{
		Use:   "testmodel",
		Short: "Write herd's generated random-weight test model (GGUF + Modelfile)",
		Long: `Write herd's deterministic random-weight llama model and its Modelfile, for
tests and for a machine with no model to download. Import it with:
  ollama create herd-tiny -f DIR/Modelfile`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s testmodel.Size
			switch size {
			case "tiny":
				s = testmodel.Tiny
			case "slow":
				s = testmodel.Slow
			default:
				return &exitError{exitUsage, fmt.Errorf("--size %q is not tiny or slow", size)}
			}
			mf, err := testmodel.WriteDir(dir, s)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (import: ollama create %s -f %s)\n", mf, s.Name, mf)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write into")
	cmd.Flags().StringVar(&size, "size", "tiny", "tiny (fast) or slow (to make Ollama busy on purpose)")
	return cmd
}
