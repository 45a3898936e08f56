package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestInstallCommand(t *testing.T) {
	cmd, err := InstallCommand("../..", "https://198.18.0.1:7443", "latch1.a.b.c")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LATCH_TOKEN=latch1.a.b.c ", "COORD=https://198.18.0.1:7443", "openssl x509"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("install command lacks %q:\n%s", want, cmd)
		}
	}
	if one := OneLine(cmd); strings.Contains(one, "\n") {
		t.Errorf("OneLine kept a line break: %q", one)
	}
	if _, err := InstallCommand(t.TempDir(), "x", "y"); err == nil {
		t.Error("a directory without README.md gave a command")
	}
}

// TestMakeTargets: every `make TARGET` that README.md or a page of docs/
// names is a target of the Makefile, and README names the two commands
// and the fast loop.
func TestMakeTargets(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*)( [a-z0-9 -]+)?:`).FindAllStringSubmatch(string(mk), -1) {
		targets[m[1]] = true
		for _, f := range strings.Fields(m[2]) {
			targets[f] = true
		}
	}
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`(?:sudo )?make ([a-z][a-z0-9-]*)")
	for _, f := range append(files, "../../README.md") {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllStringSubmatch(string(text), -1) {
			if !targets[m[1]] {
				t.Errorf("%s names make %s, which the Makefile does not have", f, m[1])
			}
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sudo make demo", "sudo make test", "make quick"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md does not say %q", want)
		}
	}
}
