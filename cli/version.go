package cli

import (
	"runtime/debug"
	"strings"
)

// Version is stamped at build time with -ldflags "-X ...cli.Version=..."
// (scripts/build.sh, which make build, make dist and the Dockerfile use).
// Unstamped ("dev"), the version comes from the build information that
// the go command records: see version.
var Version = "dev"

// version is the version latch reports: the stamped Version, else what
// the go command recorded in the binary.
func version() string {
	info, _ := debug.ReadBuildInfo()
	return versionOf(Version, info)
}

// versionOf is the stamped version if there is one, else the main
// module's version (set by go install ...@VERSION, and by go build in a
// checkout from the VCS state) followed by the VCS revision, commit time
// and whether the tree was modified, when the build recorded them, else
// "dev". info may be nil (a binary built without module support).
func versionOf(stamped string, info *debug.BuildInfo) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	if info == nil {
		return "dev"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	var rev, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	details := []string{"commit " + rev}
	if at != "" {
		details = append(details, at)
	}
	if modified {
		details = append(details, "modified")
	}
	return v + " (" + strings.Join(details, ", ") + ")"
}
