//go:build linux

package route

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var _ Host = Kernel{}

// ipForward is net.ipv4.ip_forward of the calling thread's network
// namespace.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// Kernel is the Host of the calling thread's network namespace (the
// process's, unless a test moved the thread): routes over rtnetlink,
// SNAT in an nftables table of its own per device (SNATTable), forwarding
// in /proc/sys.
type Kernel struct{}

// SNATTable is the name of the nftables table (family ip) that holds the
// SNAT rules of device dev: one per device, so that agents in several
// namespaces, or with several devices, never share one.
func SNATTable(dev string) string { return "latch-" + dev }

func (Kernel) Routes() ([]KernelRoute, error) {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]KernelRoute, 0, len(rs))
	for _, r := range rs {
		p := netip.PrefixFrom(netip.IPv4Unspecified(), 0) // no Dst: the default route
		if r.Dst != nil {
			a, ok := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			if !ok {
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), ones)
		}
		out = append(out, KernelRoute{Prefix: p, Dev: names[r.LinkIndex], Protocol: int(r.Protocol)})
	}
	return out, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (Kernel) AddRoute(dev string, p netip.Prefix) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("device %s: %w", dev, err)
	}
	err = netlink.RouteAdd(&netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(p),
		Protocol:  netlink.RouteProtocol(Protocol),
		Scope:     netlink.SCOPE_LINK,
		Table:     unix.RT_TABLE_MAIN,
	})
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w: %s", ErrExists, p)
	}
	return err
}

func (Kernel) DelRoute(dev string, p netip.Prefix) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // its routes went with it
		}
		return fmt.Errorf("device %s: %w", dev, err)
	}
	// The kernel deletes only a route of this protocol on this device
	// (and scope, which AddRoute set).
	err = netlink.RouteDel(&netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(p),
		Protocol:  netlink.RouteProtocol(Protocol),
		Scope:     netlink.SCOPE_LINK,
		Table:     unix.RT_TABLE_MAIN,
	})
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

func (Kernel) Forwarding() (bool, error) {
	b, err := os.ReadFile(ipForward)
	if err != nil {
		return false, err
	}
	switch string(bytes.TrimSpace(b)) {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, fmt.Errorf("%s holds %q, neither 0 nor 1", ipForward, bytes.TrimSpace(b))
}

func (Kernel) EnableForwarding() error {
	if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
		return err
	}
	return nil
}

func (Kernel) SetSNAT(dev string, overlay netip.Prefix, snat []netip.Prefix) error {
	for _, p := range snat {
		if !p.Addr().Is4() {
			return fmt.Errorf("SNAT prefix %s is not IPv4", p)
		}
	}
	if len(snat) > 0 && !overlay.Addr().Is4() {
		return fmt.Errorf("SNAT needs the IPv4 overlay range, got %v", overlay)
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: SNATTable(dev)}
	if len(snat) == 0 {
		// Nothing to remove needs no nf_tables: a node that masquerades
		// nothing works where the kernel has none.
		ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing the nftables tables: %w", err)
		}
		if !slices.ContainsFunc(ts, func(x *nftables.Table) bool { return x.Name == t.Name }) {
			return nil
		}
	}
	// Adding before deleting makes the delete succeed when there is no
	// table; the batch is one transaction.
	c.AddTable(t)
	c.DelTable(t)
	if len(snat) > 0 {
		c.AddTable(t)
		ch := c.AddChain(&nftables.Chain{
			Name:     "postrouting",
			Table:    t,
			Type:     nftables.ChainTypeNAT,
			Hooknum:  nftables.ChainHookPostrouting,
			Priority: nftables.ChainPriorityNATSource,
		})
		for _, p := range snat {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: masquerade(dev, overlay.Masked(), p.Masked())})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table ip %s: %w", t.Name, err)
	}
	return nil
}

// masquerade is `ip saddr overlay ip daddr p oifname != dev masquerade`.
func masquerade(dev string, overlay, p netip.Prefix) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, dev)
	return append(append(append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name},
	}, match(12, overlay)...), match(16, p)...), &expr.Masq{})
}

// match compares the IPv4 address at offset of the network header (12
// source, 16 destination) with p.
func match(offset uint32, p netip.Prefix) []expr.Any {
	a := p.Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}
