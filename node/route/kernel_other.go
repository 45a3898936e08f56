//go:build !linux

package route

import "net/netip"

var _ Host = Kernel{}

// Kernel is the Host of the operating system; only Linux has one, and
// elsewhere every method returns ErrUnsupported.
type Kernel struct{}

// SNATTable is the name of the nftables table of device dev's SNAT rules.
func SNATTable(dev string) string { return "latch-" + dev }

func (Kernel) Routes() ([]KernelRoute, error)                     { return nil, ErrUnsupported }
func (Kernel) AddRoute(string, netip.Prefix) error                { return ErrUnsupported }
func (Kernel) DelRoute(string, netip.Prefix) error                { return ErrUnsupported }
func (Kernel) Forwarding() (bool, error)                          { return false, ErrUnsupported }
func (Kernel) EnableForwarding() error                            { return ErrUnsupported }
func (Kernel) SetSNAT(string, netip.Prefix, []netip.Prefix) error { return ErrUnsupported }
