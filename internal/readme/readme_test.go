package readme

import (
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
