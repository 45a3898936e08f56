package userspace

import (
	"encoding/binary"
	"fmt"
	"github.com/latchnet/latch/node/enforce"
	"testing"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// benchView has one local workload whose ingress rules number n: half
// identity rules (one per remote workload), half CIDR rules (/32s and /24s
// of other addresses), all allowing TCP 443.
func benchView(n int) (*view.View, []view.Addr) {
	local := view.MustAddr("100.64.0.1")
	v := &view.View{Node: "bench", Version: 1}
	wr := view.WorkloadRules{Workload: "prod/web", IP: local, Identity: 256,
		Ingress: view.Rules{Isolated: true}, Egress: view.Rules{Isolated: true}}
	https := []view.PortRange{{Protocol: inventory.TCP, First: 443, Last: 443}}
	var remotes []view.Addr
	ids := n / 2
	for i := range ids {
		a := view.Addr{100, 65 + byte(i>>16), byte(i >> 8), byte(i)}
		id := view.Identity(1000 + i)
		v.Identities = append(v.Identities, view.IdentityEntry{IP: a, Identity: id})
		wr.Ingress.Identities = append(wr.Ingress.Identities, view.IdentityRule{Identity: id, Ports: https})
		remotes = append(remotes, a)
	}
	for i := range n - ids {
		bits := uint8(32)
		if i%2 == 1 {
			bits = 24
		}
		a := view.Addr{100, 100 + byte(i>>16), byte(i >> 8), byte(i)}
		wr.Ingress.CIDRs = append(wr.Ingress.CIDRs, view.CIDRRule{Prefix: view.Prefix{Addr: a, Bits: bits}, Ports: https})
		if bits == 32 {
			remotes = append(remotes, a)
		}
	}
	v.Identities = append(v.Identities, view.IdentityEntry{IP: local, Identity: 256})
	sortIdentities(v.Identities)
	v.Workloads = []view.WorkloadRules{wr}
	return v, remotes
}

func sortIdentities(es []view.IdentityEntry) {
	// Insertion into sorted order; the entries are nearly sorted.
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].IP.Compare(es[j-1].IP) < 0; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// BenchmarkFilter measures the cost of one packet at 10, 1,000 and 100,000
// rules: "new" makes every packet the first of a flow (a rule lookup and a
// table insert, evicting once the table is full), "tracked" sends packets
// of flows already in the table.
func BenchmarkFilter(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		v, remotes := benchView(n)
		pkts := make([][]byte, min(len(remotes), 1024))
		for i := range pkts {
			pkts[i] = syn(remotes[i*len(remotes)/len(pkts)].String(), "100.64.0.1", 1, 443)
		}
		b.Run(fmt.Sprintf("rules=%d/new", n), func(b *testing.B) {
			f := New(Options{EventBuffer: -1})
			f.Apply(v)
			i := 0
			for b.Loop() {
				p := pkts[i%len(pkts)]
				binary.BigEndian.PutUint16(p[20:22], uint16(i/len(pkts)))
				if f.Inbound(p) != enforce.Allowed {
					b.Fatal("refused")
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("rules=%d/tracked", n), func(b *testing.B) {
			f := New(Options{EventBuffer: -1})
			f.Apply(v)
			for _, p := range pkts {
				binary.BigEndian.PutUint16(p[20:22], 7)
				f.Inbound(p)
			}
			acks := make([][]byte, len(pkts))
			for i, p := range pkts {
				acks[i] = append([]byte(nil), p...)
				acks[i][33] = tcpACK
			}
			i := 0
			for b.Loop() {
				if f.Inbound(acks[i%len(acks)]) != enforce.Allowed {
					b.Fatal("refused")
				}
				i++
			}
		})
	}
	b.Run("apply/rules=100000", func(b *testing.B) {
		v, _ := benchView(100000)
		f := New(Options{EventBuffer: -1})
		for b.Loop() {
			f.Apply(v)
		}
	})
}
