package cli

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// valueName is what a flag's value may be called in help: pflag takes
// the first back-quoted word of a usage string as the value's name, so a
// back-quoted command ("`make dist`") would show as one.
var valueName = regexp.MustCompile(`^[A-Z][A-Z0-9_-]*$`)

// TestHelp renders the --help of every command and compares it with
// testdata/help/COMMAND_PATH.golden. After changing a command, run
// go test ./cli -run TestHelp -update (it also removes the files of
// commands that are gone) and read the diff.
func TestHelp(t *testing.T) {
	for _, v := range flagEnv {
		t.Setenv(v, "")
	}
	dir := filepath.Join("testdata", "help")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := newRoot(io.Discard, io.Discard)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		path := c.CommandPath()
		name := strings.ReplaceAll(path, " ", "_") + ".golden"
		seen[name] = true
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if n, _ := pflag.UnquoteUsage(f); strings.Contains(f.Usage, "`") && !valueName.MatchString(n) {
				t.Errorf("%s --%s: help names its value %q: back quotes in a usage string name the value (FILE, DIR); quote other text otherwise", path, f.Name, n)
			}
		})
		out, errOut, code := run(t, append(strings.Fields(path)[1:], "--help")...)
		if code != 0 || errOut != "" {
			t.Errorf("%s --help: exit %d: %s", path, code, errOut)
		}
		file := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%v (run go test ./cli -run TestHelp -update to create it)", err)
		} else if d := cmp.Diff(string(want), out); d != "" {
			t.Errorf("%s --help differs from %s (-want +got; go test ./cli -run TestHelp -update rewrites it):\n%s", path, file, d)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	files, err := filepath.Glob(filepath.Join(dir, "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if seen[filepath.Base(f)] {
			continue
		}
		if *update {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s is the help of no command (go test ./cli -run TestHelp -update removes it)", f)
	}
}
