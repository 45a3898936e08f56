package view

import (
	"testing"

	"github.com/latchnet/latch/inventory"
)

func TestRulesAllows(t *testing.T) {
	r := Rules{
		Isolated:   true,
		Any:        []PortRange{{inventory.UDP, 53, 53}},
		Identities: []IdentityRule{{Identity: 300, Ports: []PortRange{{inventory.TCP, 8000, 8100}}}},
		CIDRs: []CIDRRule{
			{Prefix: MustPrefix("198.19.0.0/16"), Ports: []PortRange{{inventory.TCP, 443, 443}}},
			{Prefix: MustPrefix("198.19.1.0/24"), Ports: []PortRange{{inventory.TCP, 22, 22}, {inventory.TCP, 443, 443}}},
		},
	}
	a := MustAddr
	for _, c := range []struct {
		id    Identity
		addr  string
		proto inventory.Protocol
		port  uint16
		want  bool
	}{
		{300, "100.64.0.1", inventory.TCP, 8000, true},
		{300, "100.64.0.1", inventory.TCP, 8100, true},
		{300, "100.64.0.1", inventory.TCP, 8101, false},
		{300, "100.64.0.1", inventory.UDP, 8000, false},
		{301, "100.64.0.1", inventory.TCP, 8000, false},
		{301, "100.64.0.1", inventory.UDP, 53, true}, // any peer
		{IdentityUnknown, "198.19.2.1", inventory.TCP, 443, true},
		{IdentityUnknown, "198.19.2.1", inventory.TCP, 22, false},
		{IdentityUnknown, "198.19.1.1", inventory.TCP, 22, true}, // longest prefix
		{IdentityUnknown, "198.20.0.1", inventory.TCP, 443, false},
	} {
		if got := r.Allows(c.id, a(c.addr), c.proto, c.port); got != c.want {
			t.Errorf("Allows(%d, %s, %s, %d) = %v, want %v", c.id, c.addr, c.proto, c.port, got, c.want)
		}
	}
	all := Rules{AllowAll: true}
	if !all.Allows(IdentityUnknown, a("1.2.3.4"), inventory.SCTP, 9) {
		t.Error("AllowAll refused")
	}
	var none Rules
	if none.Allows(300, a("100.64.0.1"), inventory.TCP, 80) {
		t.Error("empty rules allowed")
	}
}

func TestIdentityOf(t *testing.T) {
	v := View{Identities: []IdentityEntry{
		{MustAddr("100.64.0.1"), 256},
		{MustAddr("100.64.0.9"), 300},
		{MustAddr("100.64.1.0"), 301},
	}}
	for addr, want := range map[string]Identity{"100.64.0.1": 256, "100.64.0.9": 300, "100.64.1.0": 301, "100.64.0.2": IdentityUnknown, "1.1.1.1": IdentityUnknown} {
		if got := v.IdentityOf(MustAddr(addr)); got != want {
			t.Errorf("IdentityOf(%s) = %d, want %d", addr, got, want)
		}
	}
}
