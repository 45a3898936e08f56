// Package cli implements the latch command line: it parses arguments,
// reads files and calls into the library packages. cmd/latch is a call to
// Run. Only package cmd/latch imports it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Version is stamped at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// ExitError carries a process exit status.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Run executes the command line args (without the program name) and
// returns the process exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		// An error may quote what a coordinator or node sent: escape it,
		// line by line (multi-line errors list problems one a line).
		lines := strings.Split(err.Error(), "\n")
		for i, l := range lines {
			lines[i] = termSafe(l)
		}
		fmt.Fprintf(stderr, "latch: %s\n", strings.Join(lines, "\n"))
		return 1
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "latch",
		Short:         "Latch: a zero-trust WireGuard overlay with Kubernetes NetworkPolicy semantics",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newCoordinatorCmd(), newAdminCmd(), newFlowsCmd())
	root.AddCommand(newPolicyCmd(), newNodeCmd(), newStatusCmd(), newPeersCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "latch %s\n", Version)
		},
	})
	return root
}
