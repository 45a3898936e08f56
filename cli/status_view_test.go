package cli

import (
	"strings"
	"testing"

	"github.com/latchnet/latch/node/agent"
)

// TestPrintStatusViewNotLoaded: `latch status` says when the received view
// is not the one in force, and why.
func TestPrintStatusViewNotLoaded(t *testing.T) {
	var b strings.Builder
	printStatus(&b, agent.Status{ViewVersion: 7, EnforcedVersion: 7})
	if !strings.Contains(b.String(), "View version:  7\n") {
		t.Errorf("a loaded view:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, agent.Status{ViewVersion: 8, EnforcedVersion: 7, ViewError: "eBPF enforcer: view does not fit the eBPF maps"})
	if want := "8 received, 7 in force (not loaded: eBPF enforcer: view does not fit the eBPF maps; its new peers wait)"; !strings.Contains(b.String(), want) {
		t.Errorf("a view not loaded: want %q in\n%s", want, b.String())
	}
}
