package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the latch binary the tests built (see binary) when they
// are done, so that a run leaves no directory behind in /tmp.
func TestMain(m *testing.M) {
	code := m.Run()
	if latchBin != "" {
		if err := os.RemoveAll(filepath.Dir(latchBin)); err != nil {
			println("e2e: removing the test binary:", err.Error())
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}
