// Package cli implements the latch command line: it parses arguments,
// reads files and calls into the library packages. cmd/latch is a call to
// Run. Only packages cmd/latch and cmd/latch-docs import it (latch-docs
// writes the CLI reference from Reference).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// ExitError carries a process exit status, and the error to print (none
// when Err is nil).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

func (e *ExitError) Unwrap() error { return e.Err }

// Run executes the command line args (without the program name) and
// returns the process exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		code := 1
		var ee *ExitError
		if errors.As(err, &ee) {
			if ee.Err == nil {
				return ee.Code
			}
			code, err = ee.Code, ee.Err
		}
		// An error may quote what a coordinator or node sent: escape it,
		// line by line (multi-line errors list problems one a line).
		lines := strings.Split(err.Error(), "\n")
		for i, l := range lines {
			lines[i] = termSafe(l)
		}
		fmt.Fprintf(stderr, "latch: %s\n", strings.Join(lines, "\n"))
		return code
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "latch",
		Short:         "Latch: a zero-trust WireGuard overlay with Kubernetes NetworkPolicy semantics",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("latch {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newCoordinatorCmd(), newAdminCmd(), newFlowsCmd())
	root.AddCommand(newPolicyCmd(), newNodeCmd(), newStatusCmd(), newPeersCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "latch %s\n", version())
		},
	})
	return root
}
