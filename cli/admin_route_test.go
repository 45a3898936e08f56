package cli

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/wire"
)

// TestAdminRoute: `latch admin route list|approve|reject` against a real
// coordinator, with routes a gateway advertised in its registration.
func TestAdminRoute(t *testing.T) {
	co, latch := latchAgainst(t)
	if out, errOut, code := latch("admin", "route", "list"); code != 0 || !strings.Contains(out, "no routes advertised") {
		t.Fatalf("list of none: %d %q %q", code, out, errOut)
	}
	gw := co.MustEnroll(co.Token(1), "gw-1")
	if code, body := co.Post(gw, wire.PathRegister, wire.RegisterRequest{PublicKey: coordtest.PublicKey("gw-1"),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")},
		Routes:    []wire.Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}}}, nil); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	if out, errOut, code := latch("admin", "route", "approve", "gw-1", "198.19.1.0/24"); code != 0 || out != "route 198.19.1.0/24 of node gw-1 approved\n" {
		t.Fatalf("approve: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := latch("admin", "route", "reject", "gw-1", "198.19.2.0/24"); code != 0 || out != "route 198.19.2.0/24 of node gw-1 rejected\n" {
		t.Fatalf("reject: %d %q %q", code, out, errOut)
	}
	out, errOut, code := latch("admin", "route", "list")
	if code != 0 {
		t.Fatalf("list: %d %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^NODE  PREFIX +SNAT  STATUS +PRIMARY  ONLINE  ADVERTISED`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^gw-1  198\.19\.1\.0/24  no    approved  no       no      \S+  \S+  admin$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^gw-1  198\.19\.2\.0/24  yes   rejected  -        no      \S+  \S+  admin$`).MatchString(lines[2]) {
		t.Errorf("list:\n%s", out)
	}
	// With a site in the approved route, gw-1 is its primary gateway;
	// online once its view stream is open.
	if _, errOut, code := latch("admin", "site", "set", "site-eu/db", "--cidr", "198.19.1.0/24"); code != 0 {
		t.Fatalf("site set: %d %q", code, errOut)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := co.Connect(ctx, gw); err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^gw-1  198\.19\.1\.0/24  no    approved  yes      yes     `)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, _, _ = latch("admin", "route", "list")
		if want.MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list with gw-1 primary and online:\n%s", out)
		}
	}
	if _, errOut, code := latch("admin", "route", "approve", "gw-1", "198.19.9.0/24"); code == 0 || !strings.Contains(errOut, "node gw-1 advertises no route 198.19.9.0/24") {
		t.Errorf("approve a route not advertised: %d %q", code, errOut)
	}
}
