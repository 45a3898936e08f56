package agent

import (
	"fmt"

	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/node/route"
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

// RemoveRoutes removes the site routes the agent of interface iface
// installed (those with route.Protocol on iface, which also go with the
// interface) and its SNAT table (nftables table ip latch-IFACE), which an
// agent that did not stop cleanly leaves behind: `latch node --cleanup`.
// It returns the name of the SNAT table.
func RemoveRoutes(iface string) (string, error) {
	if err := route.Remove(route.Kernel{}, iface); err != nil {
		return route.SNATTable(iface), fmt.Errorf("removing the site routes and SNAT rules of %s: %w", iface, err)
	}
	return route.SNATTable(iface), nil
}
