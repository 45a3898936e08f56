package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRoutes(t *testing.T) {
	got, err := ParseRoutes(" 198.19.1.0/24, 198.19.2.0/24:snat,,")
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseRoutes("198.19.1.0/24:nat"); !errors.Is(err, ErrRoute) || !strings.Contains(err.Error(), "only option after ':' is snat") {
		t.Errorf("an unknown option: %v", err)
	}
}

func TestCheckRoutes(t *testing.T) {
	overlay := netip.MustParsePrefix("100.64.0.0/10")
	many := make([]Route, MaxRoutes+1)
	for i := range many {
		many[i] = Route{Prefix: fmt.Sprintf("198.19.%d.0/24", i)}
	}
	for _, c := range []struct {
		name   string
		routes []Route
		err    string // "" for valid
	}{
		{"valid", []Route{{Prefix: "198.19.1.0/24"}, {Prefix: "10.0.0.0/8"}, {Prefix: "192.168.7.1/32"}}, ""},
		{"none", nil, ""},
		{"at most MaxRoutes", many[:MaxRoutes], ""},
		{"too many", many, "65 routes advertised, at most 64"},
		{"not a prefix", []Route{{Prefix: "198.19.1.0"}}, `"198.19.1.0" is not a prefix in CIDR notation`},
		{"non-network address", []Route{{Prefix: "198.19.1.5/24"}}, "198.19.1.5/24 is not a network address: did you mean 198.19.1.0/24?"},
		{"default route", []Route{{Prefix: "0.0.0.0/0"}}, "0.0.0.0/0 is shorter than /8"},
		{"too short", []Route{{Prefix: "128.0.0.0/7"}}, "128.0.0.0/7 is shorter than /8"},
		{"IPv6", []Route{{Prefix: "fd00::/64"}}, "fd00::/64 is IPv6: only IPv4 subnets"},
		{"inside the overlay", []Route{{Prefix: "100.64.3.0/24"}}, "100.64.3.0/24 overlaps the overlay 100.64.0.0/10"},
		{"around the overlay", []Route{{Prefix: "100.0.0.0/8"}}, "100.0.0.0/8 overlaps the overlay"},
		{"twice", []Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.1.0/24", SNAT: true}}, "198.19.1.0/24 is advertised twice"},
		{"overlapping", []Route{{Prefix: "198.19.0.0/16"}, {Prefix: "198.19.1.0/24"}}, "198.19.1.0/24 overlaps 198.19.0.0/16, also advertised"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps, err := CheckRoutes(c.routes, overlay)
			if c.err == "" {
				if err != nil || len(ps) != len(c.routes) {
					t.Fatalf("%v, %v: want valid", ps, err)
				}
				return
			}
			if !errors.Is(err, ErrRoute) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("%v, want an error with %q", err, c.err)
			}
		})
	}
	// Without an overlay (the node, before it knows the coordinator's),
	// the overlay is not checked.
	if _, err := CheckRoutes([]Route{{Prefix: "100.64.3.0/24"}}, netip.Prefix{}); err != nil {
		t.Errorf("without an overlay: %v", err)
	}
}
