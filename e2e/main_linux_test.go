package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the latch binaries the tests built (see binary and
// distBinary) when they are done, so that a run leaves no directory behind
// in /tmp.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, bin := range []string{latchBin, distBin} {
		if bin == "" {
			continue
		}
		if err := os.RemoveAll(filepath.Dir(bin)); err != nil {
			println("e2e: removing a test binary:", err.Error())
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}
