//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/latchnet/latch/node/enforce"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/latchnet/latch/bpf"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// requireRoot skips a test that needs root (BPF_PROG_TEST_RUN, bpffs), and
// fails it under CI=true, where the suite runs as root and must not skip.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("this test needs root (BPF_PROG_TEST_RUN, bpffs) and CI must run it: run the suite as root")
	}
	tb.Skip("needs root to load eBPF programs (BPF_PROG_TEST_RUN, bpffs): run with sudo")
}

// loadTest loads an Enforcer pinned in a fresh directory under
// /sys/fs/bpf, removed at the end of the test.
func loadTest(tb testing.TB) *Enforcer {
	tb.Helper()
	requireRoot(tb)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("latch-test-%d-%d", os.Getpid(), rand.Uint32()))
	e, err := Load(dir)
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if err := Remove(dir); err != nil {
			tb.Errorf("Remove: %v", err)
		}
	})
	// BPF_PROG_TEST_RUN hands the programs an Ethernet frame.
	if err := e.setL3Offset(14); err != nil {
		tb.Fatal(err)
	}
	return e
}

// TCX return values as BPF_PROG_TEST_RUN reports them.
const (
	retAllow = 0xffffffff // TCX_NEXT (-1)
	retDrop  = 2          // TCX_DROP
)

// TCP flags.
const (
	fSYN = 0x02
	fACK = 0x10
)

type packet struct {
	src, dst     string
	proto        uint8
	sport, dport uint16
	flags        uint8  // TCP
	icmpType     uint8  // ICMP
	fragOff      uint16 // IPv4 flags+offset field
}

// bytes builds an Ethernet frame: BPF_PROG_TEST_RUN needs a link header for
// a TC program; the programs find the IP header through the network
// header offset, as on the TUN device where there is none.
func (p packet) bytes() []byte {
	var l4 []byte
	switch p.proto {
	case protoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		l4[12] = 5 << 4
		l4[13] = p.flags
	case protoICMP:
		l4 = make([]byte, 8)
		l4[0] = p.icmpType
	default:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
	}
	b := make([]byte, 14, 14+20+len(l4))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[6:], p.fragOff)
	ip[8] = 64
	ip[9] = p.proto
	s, d := view.MustAddr(p.src), view.MustAddr(p.dst)
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	return append(append(b, ip...), l4...)
}

func run(tb testing.TB, e *Enforcer, dir enforce.Direction, p packet) uint32 {
	tb.Helper()
	ret, err := e.program(dir).Run(&ebpf.RunOptions{Data: p.bytes()})
	if err != nil {
		tb.Fatalf("test run: %v", err)
	}
	return ret
}

func verdictName(r uint32) string {
	switch r {
	case retAllow:
		return "allow"
	case retDrop:
		return "drop"
	}
	return fmt.Sprintf("ret %d", r)
}

func tcpPorts(first, last uint16) view.PortRange {
	return view.PortRange{Protocol: inventory.TCP, First: first, Last: last}
}

const (
	apiIP   = "100.64.0.10" // local workload
	allIP   = "100.64.0.11" // local workload allowing everything in
	webIP   = "100.64.1.20" // remote, identity 300
	dbIP    = "100.64.1.21" // remote, identity 301
	otherIP = "100.64.1.99" // remote, not in the view
)

// testView: api (ingress) allows TCP 8080 from identity 300 (web), UDP 53
// from anyone, TCP 9000-9010 from 10.0.0.0/8 except 10.1.0.0/16 which gets
// only TCP 9005, TCP 7000 from 100.64.1.0/24; egress allows TCP 5432 to
// identity 301 (db). all allows every ingress.
func testView() *view.View {
	return &view.View{
		Node: "n1", Version: 1,
		Identities: []view.IdentityEntry{
			{IP: view.MustAddr(apiIP), Identity: 256},
			{IP: view.MustAddr(allIP), Identity: 257},
			{IP: view.MustAddr(webIP), Identity: 300},
			{IP: view.MustAddr(dbIP), Identity: 301},
		},
		Workloads: []view.WorkloadRules{
			{
				Workload: "prod/api", IP: view.MustAddr(apiIP), Identity: 256,
				Ingress: view.Rules{
					Isolated: true,
					Any:      []view.PortRange{{Protocol: inventory.UDP, First: 53, Last: 53}},
					Identities: []view.IdentityRule{
						{Identity: 300, Ports: []view.PortRange{tcpPorts(8080, 8080)}},
					},
					CIDRs: []view.CIDRRule{
						{Prefix: view.MustPrefix("10.0.0.0/8"), Ports: []view.PortRange{tcpPorts(9000, 9010)}},
						{Prefix: view.MustPrefix("10.1.0.0/16"), Ports: []view.PortRange{tcpPorts(9005, 9005)}},
						{Prefix: view.MustPrefix("100.64.1.0/24"), Ports: []view.PortRange{tcpPorts(7000, 7000)}},
					},
				},
				Egress: view.Rules{
					Isolated: true,
					Identities: []view.IdentityRule{
						{Identity: 301, Ports: []view.PortRange{tcpPorts(5432, 5432)}},
					},
				},
			},
			{
				Workload: "prod/all", IP: view.MustAddr(allIP), Identity: 257,
				Ingress: view.Rules{AllowAll: true},
			},
		},
	}
}

func TestProgramDecisions(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	syn := func(src, dst string, sport, dport uint16) packet {
		return packet{src: src, dst: dst, proto: protoTCP, sport: sport, dport: dport, flags: fSYN}
	}
	tests := []struct {
		name string
		dir  enforce.Direction
		p    packet
		want uint32
	}{
		{"identity rule allows", enforce.Ingress, syn(webIP, apiIP, 40000, 8080), retAllow},
		{"identity rule other port", enforce.Ingress, syn(webIP, apiIP, 40001, 8081), retDrop},
		{"other identity", enforce.Ingress, syn(dbIP, apiIP, 40002, 8080), retDrop},
		{"unknown remote", enforce.Ingress, syn("100.65.0.1", apiIP, 40003, 8080), retDrop},
		{"other protocol", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoUDP, sport: 40004, dport: 8080}, retDrop},
		{"sctp not allowed", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoSCTP, sport: 40004, dport: 8080}, retDrop},
		{"any rule", enforce.Ingress, packet{src: otherIP, dst: apiIP, proto: protoUDP, sport: 40005, dport: 53}, retAllow},
		{"any rule wrong proto", enforce.Ingress, syn(otherIP, apiIP, 40006, 53), retDrop},
		{"cidr low end", enforce.Ingress, syn("10.2.3.4", apiIP, 40007, 9000), retAllow},
		{"cidr high end", enforce.Ingress, syn("10.2.3.4", apiIP, 40008, 9010), retAllow},
		{"cidr below range", enforce.Ingress, syn("10.2.3.4", apiIP, 40009, 8999), retDrop},
		{"cidr above range", enforce.Ingress, syn("10.2.3.4", apiIP, 40010, 9011), retDrop},
		{"longest prefix narrows", enforce.Ingress, syn("10.1.2.3", apiIP, 40011, 9000), retDrop},
		{"longest prefix own port", enforce.Ingress, syn("10.1.2.3", apiIP, 40012, 9005), retAllow},
		{"cidr for an identity's address", enforce.Ingress, syn(dbIP, apiIP, 40013, 7000), retAllow},
		{"outside every prefix", enforce.Ingress, syn("192.168.1.1", apiIP, 40014, 9000), retDrop},
		{"egress identity rule", enforce.Egress, syn(apiIP, dbIP, 40015, 5432), retAllow},
		{"egress other identity", enforce.Egress, syn(apiIP, webIP, 40016, 5432), retDrop},
		{"egress not allow-all", enforce.Egress, syn(allIP, dbIP, 40017, 5432), retDrop},
		{"allow all", enforce.Ingress, syn(otherIP, allIP, 40018, 1), retAllow},
		{"allow all udp", enforce.Ingress, packet{src: "8.8.8.8", dst: allIP, proto: protoUDP, sport: 1, dport: 65535}, retAllow},
		{"unknown local ingress", enforce.Ingress, syn(webIP, "100.64.0.99", 40019, 8080), retDrop},
		{"unknown local egress", enforce.Egress, syn("100.64.0.99", dbIP, 40020, 5432), retDrop},
		{"unsolicited ack", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 40021, dport: 8080, flags: fACK}, retDrop},
		{"unsolicited syn-ack", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 40022, dport: 8080, flags: fSYN | fACK}, retDrop},
		{"ping from known remote", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoICMP, icmpType: 8}, retAllow},
		{"ping reply from known remote", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoICMP, icmpType: 0}, retAllow},
		{"ping from unknown remote", enforce.Ingress, packet{src: otherIP, dst: apiIP, proto: protoICMP, icmpType: 8}, retDrop},
		{"icmp unreachable", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoICMP, icmpType: 3}, retDrop},
		{"fragment", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 40023, dport: 8080, flags: fSYN, fragOff: 0x2000}, retDrop},
		{"other ip protocol", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: 47}, retDrop},
	}
	for _, tt := range tests {
		if got := run(t, e, tt.dir, tt.p); got != tt.want {
			t.Errorf("%s: %s %+v: got %s, want %s", tt.name, tt.dir, tt.p, verdictName(got), verdictName(tt.want))
		}
	}
}

func TestProgramNonIPv4Passes(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	b := packet{src: webIP, dst: apiIP, proto: protoTCP, dport: 1, flags: fACK}.bytes()
	binary.BigEndian.PutUint16(b[12:], 0x86dd)
	ret, err := e.objs.LatchIngress.Run(&ebpf.RunOptions{Data: b})
	if err != nil {
		t.Fatal(err)
	}
	if ret != retAllow {
		t.Errorf("non-IPv4: got %s, want allow", verdictName(ret))
	}
}

func TestConntrack(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		dir  enforce.Direction
		p    packet
		want uint32
	}{
		// Ingress flow web → api:8080.
		{"syn in", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 41000, dport: 8080, flags: fSYN}, retAllow},
		{"syn-ack out (reply)", enforce.Egress, packet{src: apiIP, dst: webIP, proto: protoTCP, sport: 8080, dport: 41000, flags: fSYN | fACK}, retAllow},
		{"ack in", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 41000, dport: 8080, flags: fACK}, retAllow},
		{"reply from other port", enforce.Egress, packet{src: apiIP, dst: webIP, proto: protoTCP, sport: 8081, dport: 41000, flags: fACK}, retDrop},
		// The tracked tuple seen in the wrong direction is not a reply.
		{"same tuple other direction", enforce.Egress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 41000, dport: 8080, flags: fACK}, retDrop},
		// Egress flow api → db:5432, reply comes in.
		{"syn out", enforce.Egress, packet{src: apiIP, dst: dbIP, proto: protoTCP, sport: 42000, dport: 5432, flags: fSYN}, retAllow},
		{"syn-ack in", enforce.Ingress, packet{src: dbIP, dst: apiIP, proto: protoTCP, sport: 5432, dport: 42000, flags: fSYN | fACK}, retAllow},
		{"db opens to api (not allowed)", enforce.Ingress, packet{src: dbIP, dst: apiIP, proto: protoTCP, sport: 5432, dport: 42001, flags: fSYN}, retDrop},
		// UDP: the first packet opens the flow; the reply passes.
		{"udp out denied", enforce.Egress, packet{src: apiIP, dst: webIP, proto: protoUDP, sport: 43000, dport: 53}, retDrop},
		{"udp in", enforce.Ingress, packet{src: otherIP, dst: apiIP, proto: protoUDP, sport: 43001, dport: 53}, retAllow},
		{"udp reply out", enforce.Egress, packet{src: apiIP, dst: otherIP, proto: protoUDP, sport: 53, dport: 43001}, retAllow},
	}
	for _, s := range steps {
		if got := run(t, e, s.dir, s.p); got != s.want {
			t.Errorf("%s: got %s, want %s", s.name, verdictName(got), verdictName(s.want))
		}
	}
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.ByReason[ReasonTracked] != 4 || c.ByReason[ReasonNotSYN] != 1 || c.ByReason[ReasonIdentity] != 2 ||
		c.ByReason[ReasonUnknownLocal] != 1 || c.ByReason[ReasonNoRule] != 2 || c.Allowed != 7 || c.Dropped != 4 {
		t.Errorf("counters: %+v", c)
	}
}

func TestConntrackTimeout(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	syn := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 44000, dport: 8080, flags: fSYN}
	if got := run(t, e, enforce.Ingress, syn); got != retAllow {
		t.Fatalf("syn: %s", verdictName(got))
	}
	// Age both entries of the flow (opener and reply) past the TCP timeout.
	var keys []bpf.LatchCtKey
	var vals []bpf.LatchCtVal
	var k bpf.LatchCtKey
	var v bpf.LatchCtVal
	for it := e.objs.Conntrack.Iterate(); it.Next(&k, &v); {
		keys, vals = append(keys, k), append(vals, v)
	}
	if len(keys) != 2 {
		t.Fatalf("conntrack entries after one SYN: %d, want 2 (opener and reply)", len(keys))
	}
	for i := range keys {
		vals[i].LastSeenNs -= uint64(ctTimeoutTCP) + uint64(time.Second)
		if err := e.objs.Conntrack.Put(&keys[i], &vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	reply := packet{src: apiIP, dst: webIP, proto: protoTCP, sport: 8080, dport: 44000, flags: fACK}
	if got := run(t, e, enforce.Egress, reply); got != retDrop {
		t.Errorf("reply after timeout: got %s, want drop", verdictName(got))
	}
}

func htons(p uint16) uint16 { return p>>8 | p<<8 }

func TestFlipRuleSets(t *testing.T) {
	e := loadTest(t)
	v := testView()
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	est := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 45000, dport: 8080, flags: fSYN}
	if got := run(t, e, enforce.Ingress, est); got != retAllow {
		t.Fatalf("before: %s", verdictName(got))
	}
	// New view: web's rule removed, db may use 8080.
	v2 := testView()
	v2.Version = 2
	v2.Workloads[0].Ingress.Identities = []view.IdentityRule{{Identity: 301, Ports: []view.PortRange{tcpPorts(8080, 8080)}}}
	for i := range 3 { // several flips: both sets are rewritten
		vv := v2
		if i == 1 {
			vv = v
		}
		if err := e.Apply(vv); err != nil {
			t.Fatal(err)
		}
	}
	var cfg bpf.LatchSettings
	if err := e.objs.Config.Lookup(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Generation != 4 || cfg.Active != 0 {
		t.Errorf("config after 4 applies: %+v", cfg)
	}
	if got := run(t, e, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 45001, dport: 8080, flags: fSYN}); got != retDrop {
		t.Errorf("removed rule: new flow got %s, want drop", verdictName(got))
	}
	if got := run(t, e, enforce.Ingress, packet{src: dbIP, dst: apiIP, proto: protoTCP, sport: 45002, dport: 8080, flags: fSYN}); got != retAllow {
		t.Errorf("added rule: got %s, want allow", verdictName(got))
	}
	// A flow established before the flip is decided again at its next
	// packet: web's rule is gone, so it ends (both directions).
	est.flags = fACK
	if got := run(t, e, enforce.Ingress, est); got != retDrop {
		t.Errorf("flow the new set no longer allows: got %s, want drop (revoked)", verdictName(got))
	}
	estReply := packet{src: apiIP, dst: webIP, proto: protoTCP, sport: 8080, dport: 45000, flags: fACK}
	if got := run(t, e, enforce.Egress, estReply); got != retDrop {
		t.Errorf("reply of a revoked flow: got %s, want drop", verdictName(got))
	}
	// Stale entries of the inactive set were removed, not left behind.
	n := 0
	it := e.objs.RulesA.Iterate()
	var k bpf.LatchRuleKey
	var val bpf.LatchPorts
	for it.Next(&k, &val) {
		n++
		if k.Identity == 300 {
			t.Errorf("stale rule for identity 300 in the active set")
		}
	}
	if n != 3 { // Any UDP, identity 301 TCP ingress, identity 301 TCP egress
		t.Errorf("rules in active set: %d, want 3", n)
	}
}

func TestEvents(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	run(t, e, enforce.Ingress, packet{src: dbIP, dst: apiIP, proto: protoTCP, sport: 46000, dport: 8080, flags: fSYN})
	run(t, e, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 46001, dport: 8080, flags: fSYN})
	want := []enforce.Event{
		{Src: view.MustAddr(dbIP), Dst: view.MustAddr(apiIP), SrcPort: 46000, DstPort: 8080, Protocol: protoTCP,
			Direction: enforce.Ingress, Verdict: enforce.Dropped, Reason: ReasonNoRule.String(), Workload: "prod/api", RemoteIdentity: 301},
		{Src: view.MustAddr(webIP), Dst: view.MustAddr(apiIP), SrcPort: 46001, DstPort: 8080, Protocol: protoTCP,
			Direction: enforce.Ingress, Verdict: enforce.Allowed, Reason: ReasonIdentity.String(), Workload: "prod/api", RemoteIdentity: 300},
	}
	for i, w := range want {
		select {
		case got := <-e.Events():
			if d := time.Since(got.Time); d < -time.Second || d > time.Minute {
				t.Errorf("event %d time %v is %v from now", i, got.Time, d)
			}
			got.Time = time.Time{}
			if got.Bytes != 54 { // Ethernet + IPv4 + TCP headers
				t.Errorf("event %d: %d bytes, want 54", i, got.Bytes)
			}
			got.Bytes = 0
			if got != w {
				t.Errorf("event %d:\n got %+v\nwant %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d: none within 5s", i)
		}
	}
}

// TestAdopt: a second Load on the same pin directory (a restarted agent)
// sees the rules and flows of the first.
func TestAdopt(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("latch-test-adopt-%d", os.Getpid()))
	e1, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(dir)
	if err := e1.setL3Offset(14); err != nil { // test-run frames are Ethernet
		t.Fatal(err)
	}
	if err := e1.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	run(t, e1, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 47000, dport: 8080, flags: fSYN})
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	e2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if got := run(t, e2, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 47001, dport: 8080, flags: fSYN}); got != retAllow {
		t.Errorf("adopted rules: got %s, want allow", verdictName(got))
	}
	if got := run(t, e2, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 47000, dport: 8080, flags: fACK}); got != retAllow {
		t.Errorf("adopted flow: got %s, want allow", verdictName(got))
	}
}

// TestReasonsMatchC checks the Go mirror of enum reason, and the decoding
// of enums verdict and dir.
func TestReasonsMatchC(t *testing.T) {
	pairs := map[Reason]bpf.LatchReason{
		ReasonAllowAll: bpf.LatchReasonREASON_ALLOW_ALL, ReasonAny: bpf.LatchReasonREASON_ALLOW_ANY,
		ReasonIdentity: bpf.LatchReasonREASON_ALLOW_IDENTITY, ReasonCIDR: bpf.LatchReasonREASON_ALLOW_CIDR,
		ReasonTracked: bpf.LatchReasonREASON_ALLOW_TRACKED, ReasonICMPEcho: bpf.LatchReasonREASON_ALLOW_ICMP_ECHO,
		ReasonNotIPv4: bpf.LatchReasonREASON_ALLOW_NOT_IPV4, ReasonNoRule: bpf.LatchReasonREASON_DROP_NO_RULE,
		ReasonUnknownLocal: bpf.LatchReasonREASON_DROP_UNKNOWN_LOCAL, ReasonNotSYN: bpf.LatchReasonREASON_DROP_NOT_SYN,
		ReasonFragment: bpf.LatchReasonREASON_DROP_FRAGMENT, ReasonICMP: bpf.LatchReasonREASON_DROP_ICMP,
		ReasonProtocol: bpf.LatchReasonREASON_DROP_PROTOCOL, ReasonMalformed: bpf.LatchReasonREASON_DROP_MALFORMED,
		ReasonConnectDenied: bpf.LatchReasonREASON_DROP_CONNECT_DENIED,
		ReasonRevoked:       bpf.LatchReasonREASON_DROP_REVOKED,
		ReasonEventLost:     bpf.LatchReasonREASON_EVENT_LOST, ReasonMonitor: bpf.LatchReasonREASON_ALLOW_MONITOR,
		numReasons: bpf.LatchReasonREASON_MAX,
	}
	for g, c := range pairs {
		if uint32(g) != uint32(c) {
			t.Errorf("reason %s = %d in Go, %d in C", g, g, c)
		}
	}
	for c, want := range map[bpf.LatchVerdict]enforce.Verdict{bpf.LatchVerdictVERDICT_ALLOWED: enforce.Allowed,
		bpf.LatchVerdictVERDICT_DROPPED: enforce.Dropped, bpf.LatchVerdictVERDICT_WOULD_DENY: enforce.WouldDeny} {
		if got := verdictOf(uint8(c)); got != want {
			t.Errorf("C verdict %d decodes as %s, want %s", c, got, want)
		}
	}
	for c, want := range map[bpf.LatchDir]enforce.Direction{bpf.LatchDirDIR_INGRESS: enforce.Ingress, bpf.LatchDirDIR_EGRESS: enforce.Egress} {
		if got := directionOf(uint8(c)); got != want || kernelDir(want) != uint8(c) {
			t.Errorf("C direction %d decodes as %s, encodes back as %d; want %s", c, got, kernelDir(want), want)
		}
	}
	if MaxRanges != len(bpf.LatchPorts{}.R) {
		t.Errorf("MaxRanges %d, C holds %d", MaxRanges, len(bpf.LatchPorts{}.R))
	}
}

// TestProgramMatchesAllows runs random packets of random views through the
// programs and compares with view.Rules.Allows.
func TestProgramMatchesAllows(t *testing.T) {
	e := loadTest(t)
	r := rand.New(rand.NewPCG(3, 4))
	sport := uint16(1024)
	sites := 0
	for round := range 20 {
		v := randomView(r, 4, 4)
		if round%2 == 1 {
			// Some workloads and sites in monitor mode: they pass what
			// Allows denies.
			for i := range v.Workloads {
				v.Workloads[i].Monitor = i%2 == 0
			}
			for i := range v.Sites {
				v.Sites[i].Monitor = i%2 == 1
			}
		}
		if err := e.Apply(v); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			q := randomQuery(r, v)
			p := packet{src: q.remote.String(), dst: q.local.String(), proto: protocols[q.pi].num, sport: sport, dport: q.port, flags: fSYN}
			if q.dir == enforce.Egress {
				p.src, p.dst = p.dst, p.src
			}
			sport++ // a new flow each time: no conntrack hits
			want := uint32(retDrop)
			if q.rules.Allows(v.IdentityOf(q.remote), q.remote, protocols[q.pi].name, q.port) || q.monitor {
				want = retAllow
			}
			if got := run(t, e, q.dir, p); got != want {
				t.Fatalf("round %d: %s %s %+v: program %s, Allows %s\nrules %+v", round, q.name, q.dir, p, verdictName(got), verdictName(want), q.rules)
			}
			if q.local[0] == 198 {
				sites++
			}
		}
	}
	if sites < 500 {
		t.Errorf("only %d of 4000 packets had a site host as local address", sites)
	}
}

// TestAttachTCX attaches to a TUN device in a throwaway network
// namespace, checks that a second Load adopts the pinned links and that
// Remove detaches them.
func TestAttachTCX(t *testing.T) {
	e := loadTest(t)
	ifindex := tunInterface(t)
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	if err := e.AttachTCX(ifindex); err != nil {
		t.Fatalf("AttachTCX: %v", err)
	}
	if err := e.AttachTCX(ifindex); err != nil {
		t.Fatalf("AttachTCX again: %v", err)
	}
	e2, err := Load(e.pinDir)
	if err != nil {
		t.Fatalf("Load adopting links: %v", err)
	}
	if e2.links[kernelIngress] == nil || e2.links[kernelEgress] == nil {
		t.Fatal("pinned links not adopted")
	}
	if err := e2.AttachTCX(ifindex); err != nil {
		t.Fatalf("AttachTCX after adopting: %v", err)
	}
	e2.Close()
	if n := tcxPrograms(t, ifindex); n != 2 {
		t.Errorf("programs attached after closing both enforcers: %d, want 2", n)
	}
	// The interface was recreated (a restarted wireguard-go agent): the
	// stale links are replaced. Here the "new" interface does not exist,
	// so attaching fails, but the old links are gone from the old one.
	e.Close()
	e3, err := Load(e.pinDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := e3.AttachTCX(ifindex + 1000); err == nil {
		t.Error("AttachTCX on a missing interface: no error")
	}
	e3.Close()
	if n := tcxPrograms(t, ifindex); n != 0 {
		t.Errorf("stale links not replaced: %d programs still on the old interface", n)
	}
	if err := Remove(e.pinDir); err != nil {
		t.Fatal(err)
	}
	if n := tcxPrograms(t, ifindex); n != 0 {
		t.Errorf("programs attached after Remove: %d, want 0", n)
	}
	if _, err := os.Stat(e.pinDir); !os.IsNotExist(err) {
		t.Errorf("pin directory left after Remove: %v", err)
	}
}

func BenchmarkProgramRun(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			e := loadTest(b)
			v := benchView(n)
			if err := e.Apply(v); err != nil {
				b.Fatal(err)
			}
			go func() {
				for range e.Events() { // drain, as the agent does
				}
			}()
			// Remotes are the identities of rules in the middle.
			remote := benchAddr(n / 2).String()
			b.Run("new-flow", func(b *testing.B) {
				var total time.Duration
				for i := 0; b.Loop(); i++ {
					p := packet{src: benchAddr(n/2 + i%4).String(), dst: apiIP, proto: protoTCP,
						sport: uint16(1024 + i%60000), dport: uint16(1000 + i%7), flags: fSYN}
					if i%60000 == 59999 { // keep flows new
						b.StopTimer()
						clearConntrack(b, e)
						b.StartTimer()
					}
					ret, d, err := e.objs.LatchIngress.Benchmark(p.bytes(), 1, nil)
					if err != nil || ret != retAllow {
						b.Fatalf("ret %s, err %v", verdictName(ret), err)
					}
					total += d
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
			})
			b.Run("tracked", func(b *testing.B) {
				p := packet{src: remote, dst: apiIP, proto: protoTCP, sport: 999, dport: 1000, flags: fSYN}
				if run(b, e, enforce.Ingress, p) != retAllow {
					b.Fatal("priming packet dropped")
				}
				p.flags = fACK
				_, d, err := e.objs.LatchIngress.Benchmark(p.bytes(), b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
			})
			b.Run("denied", func(b *testing.B) {
				var total time.Duration
				for i := 0; b.Loop(); i++ {
					p := packet{src: remote, dst: apiIP, proto: protoTCP, sport: uint16(i), dport: 2, flags: fSYN}
					_, d, err := e.objs.LatchIngress.Benchmark(p.bytes(), 1, nil)
					if err != nil {
						b.Fatal(err)
					}
					total += d
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
			})
		})
	}
}

// benchView: workload api with n identity rules (one identity per remote
// address, TCP 1000-1006), and n/100 CIDR rules.
func benchView(n int) *view.View {
	v := &view.View{Version: 1}
	w := view.WorkloadRules{Workload: "prod/api", IP: view.MustAddr(apiIP), Identity: 256, Ingress: view.Rules{Isolated: true}}
	for i := range n {
		id := view.Identity(1000 + i)
		v.Identities = append(v.Identities, view.IdentityEntry{IP: benchAddr(i), Identity: id})
		w.Ingress.Identities = append(w.Ingress.Identities, view.IdentityRule{Identity: id, Ports: []view.PortRange{tcpPorts(1000, 1006)}})
	}
	for i := range n / 100 {
		w.Ingress.CIDRs = append(w.Ingress.CIDRs, view.CIDRRule{Prefix: view.Prefix{Addr: view.Addr{10, byte(i >> 8), byte(i), 0}, Bits: 24}, Ports: []view.PortRange{tcpPorts(80, 80)}})
	}
	v.Workloads = []view.WorkloadRules{w}
	return v
}

func benchAddr(i int) view.Addr { return view.Addr{100, 80 + byte(i>>16), byte(i >> 8), byte(i)} }

func clearConntrack(tb testing.TB, e *Enforcer) {
	var keys []bpf.LatchCtKey
	var k bpf.LatchCtKey
	var v bpf.LatchCtVal
	it := e.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e.objs.Conntrack.Delete(&k)
	}
}

// tunInterface creates a TUN device (L3, like wireguard-go's) in a new network namespace, which
// the calling goroutine enters (locked to its thread) until the test ends.
func tunInterface(t *testing.T) int {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // also enters it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netns.Set(orig)
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	la := netlink.NewLinkAttrs()
	la.Name = "latch0"
	tun := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_DEFAULTS}
	if err := netlink.LinkAdd(tun); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(tun) })
	l, err := netlink.LinkByName("latch0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func tcxPrograms(t *testing.T, ifindex int) int {
	t.Helper()
	n := 0
	for _, a := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: a})
		if err != nil {
			t.Fatal(err)
		}
		n += len(r.Programs)
	}
	return n
}

// TestTrackedAcrossFlip: a tracked flow the new rule set still allows keeps
// passing after a flip (decided again once, then tracked under the new
// generation), and a flow whose reply entry was evicted is found through
// its opener entry.
func TestTrackedAcrossFlip(t *testing.T) {
	e := loadTest(t)
	v := testView()
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	syn := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 47000, dport: 8080, flags: fSYN}
	if got := run(t, e, enforce.Ingress, syn); got != retAllow {
		t.Fatalf("syn: %s", verdictName(got))
	}
	v2 := testView()
	v2.Version = 2
	if err := e.Apply(v2); err != nil {
		t.Fatal(err)
	}
	var cfg bpf.LatchSettings
	if err := e.objs.Config.Lookup(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	ack := syn
	ack.flags = fACK
	reply := packet{src: apiIP, dst: webIP, proto: protoTCP, sport: 8080, dport: 47000, flags: fACK}
	if got := run(t, e, enforce.Ingress, ack); got != retAllow {
		t.Errorf("ack after a flip to an equal rule set: got %s, want allow", verdictName(got))
	}
	opener := bpf.LatchCtKey{Saddr: be32(view.MustAddr(webIP)), Daddr: be32(view.MustAddr(apiIP)),
		Sport: htons(47000), Dport: htons(8080), Proto: protoTCP}
	replyKey := bpf.LatchCtKey{Saddr: opener.Daddr, Daddr: opener.Saddr, Sport: opener.Dport, Dport: opener.Sport, Proto: protoTCP}
	var val bpf.LatchCtVal
	if err := e.objs.Conntrack.Lookup(&opener, &val); err != nil {
		t.Fatal(err)
	}
	if val.Generation != cfg.Generation || val.Opener != 1 || val.Dir != kernelIngress {
		t.Errorf("opener entry after the recheck: %+v, want generation %d, opener, ingress", val, cfg.Generation)
	}
	if err := e.objs.Conntrack.Delete(&replyKey); err != nil {
		t.Fatal(err)
	}
	if got := run(t, e, enforce.Egress, reply); got != retAllow {
		t.Errorf("reply whose entry was evicted: got %s, want allow", verdictName(got))
	}
	if err := e.objs.Conntrack.Lookup(&replyKey, &val); err != nil {
		t.Fatalf("reply entry not restored: %v", err)
	}
	if val.Opener != 0 || val.Dir != kernelEgress {
		t.Errorf("restored reply entry: %+v", val)
	}
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.ByReason[ReasonRevoked] != 0 || c.ByReason[ReasonTracked] != 2 {
		t.Errorf("counters: revoked %d tracked %d, want 0 and 2", c.ByReason[ReasonRevoked], c.ByReason[ReasonTracked])
	}
}

// BenchmarkTestRunFloor measures what BPF_PROG_TEST_RUN itself costs, with
// a program that only returns: "repeat" is the floor under the "tracked"
// figures of BenchmarkProgramRun (one call, N runs), "per-call" the floor
// under "new-flow" and "denied" (one call per packet).
func BenchmarkTestRunFloor(b *testing.B) {
	requireRoot(b)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	pkt := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 999, dport: 8080, flags: fACK}.bytes()
	b.Run("repeat", func(b *testing.B) {
		_, d, err := prog.Benchmark(pkt, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
	})
	b.Run("per-call", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			_, d, err := prog.Benchmark(pkt, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			total += d
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
	})
}

// TestConntrackEviction fills a small conntrack map with new flows and
// checks the stats that show it: entries created beyond the capacity, and
// the packet of an evicted TCP connection dropped as a miss (it is no SYN,
// so it cannot open a new flow) while a recent flow still passes.
func TestConntrackEviction(t *testing.T) {
	requireRoot(t)
	const capacity = 16
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("latch-test-ct-%d-%d", os.Getpid(), rand.Uint32()))
	e, err := load(dir, func(s *ebpf.CollectionSpec) { s.Maps[bpf.LatchMapConntrack].MaxEntries = capacity })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := Remove(dir); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	if err := e.setL3Offset(14); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	const flows = 8 * capacity
	for i := range uint16(flows) {
		syn := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 50000 + i, dport: 8080, flags: fSYN}
		if got := run(t, e, enforce.Ingress, syn); got != retAllow {
			t.Fatalf("syn %d: %s", i, verdictName(got))
		}
	}
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.ConntrackCapacity != capacity || c.ConntrackCreated != 2*flows || c.ConntrackMisses != 0 {
		t.Fatalf("after %d flows: capacity %d, created %d, misses %d; want %d, %d, 0",
			flows, c.ConntrackCapacity, c.ConntrackCreated, c.ConntrackMisses, capacity, 2*flows)
	}
	last := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 50000 + flows - 1, dport: 8080, flags: fACK}
	if got := run(t, e, enforce.Ingress, last); got != retAllow {
		t.Errorf("ack of the newest flow: %s, want allow", verdictName(got))
	}
	first := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 50000, dport: 8080, flags: fACK}
	if got := run(t, e, enforce.Ingress, first); got != retDrop {
		t.Errorf("ack of the first (evicted) flow: %s, want drop", verdictName(got))
	}
	c2, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c2.ConntrackMisses != 1 || c2.ByReason[ReasonNotSYN] != 1 {
		t.Errorf("after the evicted flow's ack: misses %d, tcp-not-syn %d; want 1 and 1", c2.ConntrackMisses, c2.ByReason[ReasonNotSYN])
	}
}

// TestApplyFailureKeepsRules: a view the maps cannot hold (too many port
// ranges for one rule, or more rules than the map has room for) is
// refused, and the rule set in force keeps deciding; the next view that
// fits is applied.
func TestApplyFailureKeepsRules(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("latch-test-full-%d-%d", os.Getpid(), rand.Uint32()))
	// Room for testView's rules, not for many more.
	e, err := load(dir, func(s *ebpf.CollectionSpec) {
		s.Maps[bpf.LatchMapRulesA].MaxEntries = 8
		s.Maps[bpf.LatchMapRulesB].MaxEntries = 8
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := Remove(dir); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	if err := e.setL3Offset(14); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	allowed := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 51000, dport: 8080, flags: fSYN}
	newPort := packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 51001, dport: 22, flags: fSYN}

	tooMany := testView()
	tooMany.Version = 2
	for i := range MaxRanges + 1 {
		p := uint16(2000 + 2*i)
		tooMany.Workloads[0].Ingress.Any = append(tooMany.Workloads[0].Ingress.Any, tcpPorts(p, p))
	}
	tooMany.Workloads[0].Ingress.Any = append(tooMany.Workloads[0].Ingress.Any, tcpPorts(22, 22))
	if err := e.Apply(tooMany); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a rule of %d port ranges: %v, want ErrTooLarge", MaxRanges+2, err)
	}

	full := testView()
	full.Version = 3
	for i := range 20 {
		full.Identities = append(full.Identities, view.IdentityEntry{IP: view.Addr{100, 64, 9, byte(i)}, Identity: view.Identity(1000 + i)})
		full.Workloads[0].Ingress.Identities = append(full.Workloads[0].Ingress.Identities,
			view.IdentityRule{Identity: view.Identity(1000 + i), Ports: []view.PortRange{tcpPorts(22, 22)}})
	}
	full.Workloads[0].Ingress.Identities = append(full.Workloads[0].Ingress.Identities,
		view.IdentityRule{Identity: 300, Ports: []view.PortRange{tcpPorts(22, 22)}})
	if err := e.Apply(full); err == nil {
		t.Error("a view with more rules than the map holds: no error")
	}
	for _, tc := range []struct {
		name string
		p    packet
		want uint32
	}{{"allowed by the rules in force", allowed, retAllow}, {"allowed only by the refused views", newPort, retDrop}} {
		if got := run(t, e, enforce.Ingress, tc.p); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, verdictName(got), verdictName(tc.want))
		}
	}

	fits := testView()
	fits.Version = 4
	fits.Workloads[0].Ingress.Any = append(fits.Workloads[0].Ingress.Any, tcpPorts(22, 22))
	if err := e.Apply(fits); err != nil {
		t.Fatalf("a view that fits, after the refused ones: %v", err)
	}
	if got := run(t, e, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 51002, dport: 22, flags: fSYN}); got != retAllow {
		t.Errorf("port 22 under the view that fits: %s, want allow", verdictName(got))
	}
}
