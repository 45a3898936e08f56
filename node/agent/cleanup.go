package agent

import (
	"fmt"

	"github.com/latchnet/latch/node/enforce/ebpf"
)

// RemoveEnforcement detaches the eBPF enforcer of interface iface and
// deletes what it pinned under pinDir (ebpf.DefaultPinDir(iface) when
// pinDir is empty), which outlives the agent on purpose (fail-static):
// `latch node --cleanup`. It returns the pin directory it cleaned.
func RemoveEnforcement(iface, pinDir string) (string, error) {
	if pinDir == "" {
		pinDir = ebpf.DefaultPinDir(iface)
	}
	if err := ebpf.Remove(pinDir); err != nil {
		return pinDir, fmt.Errorf("removing the eBPF enforcer's maps and links: %w", err)
	}
	return pinDir, nil
}
