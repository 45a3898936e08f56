package netmap

import (
	"slices"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
	networkingv1 "k8s.io/api/networking/v1"
)

// portSet is a set of (protocol, port) as ranges. The zero value is empty.
// It is kept unnormalized while being built; normalize before reading.
type portSet []view.PortRange

var allPorts = portSet{
	{Protocol: inventory.SCTP, First: 1, Last: 65535},
	{Protocol: inventory.TCP, First: 1, Last: 65535},
	{Protocol: inventory.UDP, First: 1, Last: 65535},
}

func protoRank(p inventory.Protocol) int {
	switch p {
	case inventory.SCTP:
		return 0
	case inventory.TCP:
		return 1
	default:
		return 2
	}
}

// normalize sorts and merges overlapping or adjacent ranges in place.
func (s portSet) normalize() portSet {
	if len(s) < 2 {
		return s
	}
	slices.SortFunc(s, func(a, b view.PortRange) int {
		if d := protoRank(a.Protocol) - protoRank(b.Protocol); d != 0 {
			return d
		}
		return int(a.First) - int(b.First)
	})
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.Protocol == last.Protocol && uint32(r.First) <= uint32(last.Last)+1 {
			if r.Last > last.Last {
				last.Last = r.Last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// intersects reports whether two sets share a (protocol, port). It does
// not need normalized input.
func intersects(a, b portSet) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Protocol == y.Protocol && x.First <= y.Last && y.First <= x.Last {
				return true
			}
		}
	}
	return false
}

// compiledPorts is a rule's port list, resolved where it can be without
// knowing the destination.
type compiledPorts struct {
	all     bool                             // no ports listed: every port
	numeric portSet                          // numeric entries and protocol-only entries
	named   []networkingv1.NetworkPolicyPort // named entries, resolved per destination
}

func compilePorts(ports []networkingv1.NetworkPolicyPort) compiledPorts {
	if len(ports) == 0 {
		return compiledPorts{all: true}
	}
	var c compiledPorts
	for i := range ports {
		if ports[i].Port != nil && ports[i].Port.StrVal != "" {
			c.named = append(c.named, ports[i])
			continue
		}
		proto, lo, hi, _ := policy.PortRange(&ports[i], nil)
		c.numeric = append(c.numeric, view.PortRange{Protocol: proto, First: lo, Last: hi})
	}
	c.numeric = c.numeric.normalize()
	return c
}

// appendTo adds the rule's ports, with names resolved against dst, to s.
func (c *compiledPorts) appendTo(s portSet, dst *inventory.Workload) portSet {
	if c.all {
		return append(s, allPorts...)
	}
	s = append(s, c.numeric...)
	for i := range c.named {
		if proto, lo, hi, ok := policy.PortRange(&c.named[i], dst); ok {
			s = append(s, view.PortRange{Protocol: proto, First: lo, Last: hi})
		}
	}
	return s
}
