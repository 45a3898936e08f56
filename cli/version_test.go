package cli

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "-trimpath", Value: "true"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "7df15fa0123456789abcdef0123456789abcdef0"},
		{Key: "vcs.time", Value: "2026-12-03T21:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	for _, c := range []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"stamped by scripts/build.sh", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: vcs}, "v1.2.3"},
		{"go install ...@v1.4.0", "dev", &debug.BuildInfo{Main: debug.Module{Path: module, Version: "v1.4.0"}}, "v1.4.0"},
		{"go build in a modified checkout", "dev", &debug.BuildInfo{Main: debug.Module{Path: module, Version: "v0.0.0-20261203210000-7df15fa01234+dirty"}, Settings: vcs},
			"v0.0.0-20261203210000-7df15fa01234+dirty (commit 7df15fa01234, 2026-12-03T21:00:00Z, modified)"},
		{"go build with VCS stamping but no module version", "dev", &debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}, Settings: vcs[:4]},
			"dev (commit 7df15fa01234, 2026-12-03T21:00:00Z)"},
		{"go build -buildvcs=false", "dev", &debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}}, "dev"},
		{"no build info", "", nil, "dev"},
	} {
		if got := versionOf(c.stamped, c.info); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

const module = "github.com/latchnet/latch"

// TestVersionCommandAndFlag: latch version and latch --version say the
// same.
func TestVersionCommandAndFlag(t *testing.T) {
	cmd, _, code := run(t, "version")
	flag, _, code2 := run(t, "--version")
	if code != 0 || code2 != 0 || cmd != flag || !strings.HasPrefix(cmd, "latch ") {
		t.Errorf("latch version: %q (exit %d); latch --version: %q (exit %d); want the same line", cmd, code, flag, code2)
	}
}
