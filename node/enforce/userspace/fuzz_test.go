package userspace

import (
	"github.com/latchnet/latch/node/enforce"
	"testing"
)

// FuzzFilter feeds arbitrary bytes to both directions of a filter holding
// the test view, then as the quoted packet of an ICMP error. It must never
// panic, and a packet the parser refuses must be dropped.
func FuzzFilter(f *testing.F) {
	f.Add(syn(laptop, web, 40000, 443))
	f.Add(tcp(web, laptop, 443, 40000, tcpSYN|tcpACK))
	f.Add(udp(db, web, 5000, 53))
	f.Add(sctp(web, api, 40000, 9000))
	f.Add(icmpEcho(laptop, web, icmpEchoRequest, 7))
	f.Add(icmpError(api, web, icmpDestUnreachable, syn(web, api, 40000, 8080)))
	f.Add(fragment(udp(db, web, 5000, 53), 77, 0, true))
	f.Add(fragment(udp(db, web, 5000, 53), 77, 2, false))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0})
	filter := New(Options{EventBuffer: -1})
	filter.Apply(testView(1))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		orig := append([]byte(nil), pkt...)
		out := filter.Outbound(pkt)
		in := filter.Inbound(pkt)
		if _, r := parse(pkt); r != reasonNone && (out == enforce.Allowed || in == enforce.Allowed) {
			t.Fatalf("unparsable packet (%s) passed: out %s in %s", r, out, in)
		}
		if string(orig) != string(pkt) {
			t.Fatal("the filter changed the packet")
		}
		filter.Inbound(icmpError(api, web, icmpDestUnreachable, append(make([]byte, 0, len(pkt)), pkt...)))
		filter.Outbound(icmpError(web, api, icmpDestUnreachable, pkt))
	})
}
