package cli

import (
	"io"
	"os"

	"github.com/spf13/cobra"
)

// flagEnv are the environment variables that flag defaults read. Help
// shows their values; the CLI reference and the help golden files are
// rendered without them.
var flagEnv = []string{"LATCH_COORDINATOR", "LATCH_TOKEN_FILE", "LATCH_CA_FILE", "LATCH_JOIN_TOKEN"}

// Reference returns the latch command tree for the CLI reference that
// cmd/latch-docs writes (docs/cli, docs/man): flag defaults are those of
// an empty environment, and the completion command is included.
func Reference() *cobra.Command {
	saved := map[string]string{}
	for _, v := range flagEnv {
		if val, ok := os.LookupEnv(v); ok {
			saved[v] = val
			os.Unsetenv(v)
		}
	}
	defer func() {
		for v, val := range saved {
			os.Setenv(v, val)
		}
	}()
	root := newRoot(io.Discard, io.Discard)
	root.InitDefaultCompletionCmd()
	return root
}
