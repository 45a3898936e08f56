package tracetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestTrace(t *testing.T) {
	dir := t.TempDir()
	argv, read := Wrap(t, "sh", "-c", `echo x >"$D/public"; d=$(mktemp -d "$D/p.XXXXXX"); echo y >"$d/private"; mkdir -m 0755 "$D/open"; echo z >"$D/open/file"; /bin/echo "$S"; env >/dev/null`)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "D="+dir, "S=secret-in-argv", "HIDDEN=secret-in-env")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	tr := read()
	if got := tr.PublicWritesUnder(dir); len(got) != 2 || got[0] != filepath.Join(dir, "public") || got[1] != filepath.Join(dir, "open", "file") {
		t.Errorf("PublicWritesUnder = %v, want public and open/file (not the file in the mktemp -d directory)", got)
	}
	if got := tr.ExecsWith("secret-in-argv"); len(got) != 1 {
		t.Errorf("ExecsWith(argv) = %v, want the echo", got)
	}
	if got := tr.ExecsWith("secret-in-env"); len(got) != 0 {
		t.Errorf("ExecsWith(env) = %v, want none: the environment is not a command line", got)
	}
}
