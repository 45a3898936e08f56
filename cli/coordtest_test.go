package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchnet/latch/coordinator/coordtest"
)

// latchAgainst starts an in-process coordinator (coordtest) and returns
// it with a function that runs the latch command line against it as an
// admin: stdout, stderr and the exit status.
func latchAgainst(t *testing.T) (*coordtest.Coordinator, func(args ...string) (string, string, int)) {
	t.Helper()
	co := coordtest.New(t, coordtest.Options{})
	tokenFile := filepath.Join(co.Dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(co.AdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	return co, func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		args = append(args, "--coordinator", co.URL, "--token-file", tokenFile)
		code := Run(context.Background(), args, &out, &errb)
		return out.String(), errb.String(), code
	}
}
