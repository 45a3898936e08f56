package coordinator

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataDirPrivate: the coordinator's data directory is made 0700, an
// existing looser one is tightened with a warning, and one owned by
// another user is refused.
func TestDataDirPrivate(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	fresh := filepath.Join(t.TempDir(), "new", "data")
	if err := prepareDataDir(fresh, os.Geteuid(), log); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("new data dir: %v %v; want 0700", fi, err)
	}
	if logs.Len() != 0 {
		t.Errorf("a new data dir logged: %s", logs.String())
	}
	loose := t.TempDir()
	if err := os.Chmod(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := prepareDataDir(loose, os.Geteuid(), log); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o700 {
		t.Errorf("existing 0755 data dir left %v; want 0700", fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "0755") {
		t.Errorf("tightening was not warned about: %s", logs.String())
	}
	// Owned by someone else (here: this process claims another uid).
	if err := prepareDataDir(loose, os.Geteuid()+1, log); err == nil || !strings.Contains(err.Error(), "owned by uid") {
		t.Errorf("a data dir of another user: %v; want refused", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := prepareDataDir(file, os.Geteuid(), log); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as data dir: %v", err)
	}
}
