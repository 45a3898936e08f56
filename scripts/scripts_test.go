package scripts

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestInstallScriptBakesTheURL(t *testing.T) {
	for _, u := range []string{"https://coord.example:7443", "https://198.18.0.1:7443", "https://[fd00::1]:7443", "https://coord"} {
		got, err := InstallScript(u)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if !bytes.Contains(got, []byte("\ndefault_coordinator='"+u+"'\n")) || bytes.Contains(got, []byte("\ndefault_coordinator=''\n")) {
			t.Errorf("%s: URL not baked in", u)
		}
		if len(got) != len(installScript)+len(u) {
			t.Errorf("%s: more than the one line changed", u)
		}
	}
	for _, u := range []string{"", "http://coord:7443", "https://coord:7443/path", "https://x';rm -rf /;'", "https://a b", "https://coord:7443\n", "https://$(id)", "https://user@coord"} {
		if _, err := InstallScript(u); err == nil || !strings.Contains(err.Error(), "want https://HOST[:PORT]") {
			t.Errorf("%q: %v, want refused", u, err)
		}
	}
}

// unitInScript returns the heredoc that install.sh's write_unit writes.
func unitInScript(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)\nwrite_unit\(\) \{\n\tcat >"\$1" <<'EOF'\n(.*?)\nEOF\n\}`).FindStringSubmatch(installScript)
	if m == nil {
		t.Fatal("install.sh: no write_unit heredoc")
	}
	return m[1] + "\n"
}

func TestNodeUnitIsTheScriptsUnit(t *testing.T) {
	pkg, err := os.ReadFile("../packaging/systemd/latch-node.service")
	if err != nil {
		t.Fatal(err)
	}
	if got := unitInScript(t); got != string(pkg) {
		t.Errorf("the unit install.sh writes differs from packaging/systemd/latch-node.service: keep them the same\n--- install.sh\n%s\n--- packaging\n%s", got, pkg)
	}
}

// TestOneBuildCommand checks that the Makefile and the Dockerfile build
// only through scripts/build.sh (dist.sh runs it per platform), so that the
// binary CI builds is the image's.
func TestOneBuildCommand(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	dist, err := os.ReadFile("dist.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Builds of latch itself; the SPIRE tools module (tools/spire, for the
	// SPIRE e2e test) is built on its own.
	goBuild := regexp.MustCompile(`(?m)^[^#\n]*(\bgo|\$\(GO\)) build\b.*$`)
	for name, text := range map[string][]byte{"Dockerfile": df, "Makefile": mk, "scripts/dist.sh": dist} {
		for _, loc := range goBuild.FindAll(text, -1) {
			if !strings.Contains(string(loc), "tools/spire") {
				t.Errorf("%s runs go build itself (%q): build through scripts/build.sh", name, loc)
			}
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM `).FindAll(df, -1)
	if len(froms) != 2 {
		t.Errorf("Dockerfile: %d stages, want a build stage and a runtime stage", len(froms))
	}
	for _, want := range []string{"./scripts/dist.sh /dist", "iproute2", `ENTRYPOINT ["/usr/local/bin/latch"]`, `CMD ["coordinator"`} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !bytes.Contains(mk, []byte("./scripts/build.sh $(BIN)")) || !bytes.Contains(mk, []byte("./scripts/dist.sh dist")) {
		t.Error("Makefile: make build and make dist must run scripts/build.sh and scripts/dist.sh")
	}
	if !bytes.Contains(dist, []byte(`"$here/build.sh"`)) {
		t.Error("scripts/dist.sh must build through build.sh")
	}
}

// TestBuildScript builds latch with scripts/build.sh, as the Dockerfile
// does, and checks the binary is static and says its version.
func TestBuildScript(t *testing.T) {
	out := filepath.Join(t.TempDir(), "latch")
	cmd := exec.Command("./build.sh", out)
	cmd.Env = append(os.Environ(), "VERSION=v9.9.9-test", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, b)
	}
	b, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "latch v9.9.9-test" {
		t.Errorf("latch version: %v %q, want \"latch v9.9.9-test\"", err, b)
	}
	if runtime.GOOS != "linux" {
		return
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): CGO_ENABLED=0 is missing", p.Type)
		}
	}
}

func TestInstallScriptRefusesBadInputAndHalfDownloads(t *testing.T) {
	run := func(script string, args ...string) (string, error) {
		cmd := exec.Command("sh", append([]string{"-s", "--"}, args...)...)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(installScript, "--bogus")
	if err == nil || !strings.Contains(out, "unknown option --bogus") {
		t.Errorf("--bogus: %v %q", err, out)
	}
	out, err = run(installScript, "--token")
	if err == nil || !strings.Contains(out, "--token needs a value") {
		t.Errorf("--token without a value: %v %q", err, out)
	}
	// A download cut anywhere runs nothing: sh reads the whole script (one
	// compound command) before it runs any of it.
	for _, frac := range []int{10, 30, 50, 70, 90, 99} {
		cut := installScript[:len(installScript)*frac/100]
		out, err := run(cut, "--bogus") // harmless if it ran: it stops at parsing
		if strings.Contains(out, "latch install:") || (err == nil && strings.Contains(cut, "\n{\n")) {
			t.Errorf("the script cut at %d%% ran: %v %q", frac, err, out)
		}
	}
}
