package inventory_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchnet/latch/inventory"
)

// FuzzParse feeds arbitrary bytes to the inventory reader. It never
// panics; it refuses with ErrInvalid and no inventory, or accepts one
// whose sites hold canonical IPv4 prefixes outside the overlay range that
// overlap no other site's, and whose workload and node addresses lie in
// no site. Seeds: the examples' inventories and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../examples/*inventory*.yaml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("namespaces: [{name: s}]\nworkloads: []\nsites: [{name: a, namespace: s, cidrs: [198.19.1.0/24, 198.19.2.0/25]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := inventory.Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, inventory.ErrInvalid) || inv != nil {
				t.Fatalf("refusal %v: does not wrap ErrInvalid or returns an inventory", err)
			}
			return
		}
		for i := range inv.Sites {
			s := &inv.Sites[i]
			if len(s.CIDRs) == 0 {
				t.Fatalf("site %s accepted without cidrs", s.Key())
			}
			for _, p := range s.CIDRs {
				if !p.Addr().Is4() || p != p.Masked() || p.Overlaps(inventory.OverlayRange) {
					t.Fatalf("site %s accepted with cidr %s", s.Key(), p)
				}
				if other := inv.SiteOf(p.Addr()); other != s {
					t.Fatalf("%s of site %s belongs to %v", p, s.Key(), other)
				}
				for j := range inv.Sites {
					for _, q := range inv.Sites[j].CIDRs {
						if q != p && q.Overlaps(p) {
							t.Fatalf("accepted overlapping cidrs %s and %s", p, q)
						}
					}
				}
			}
		}
		for _, w := range inv.AllWorkloads() {
			if s := inv.SiteOf(w.IP); s != nil {
				t.Fatalf("workload %s at %s is inside site %s", w.Key(), w.IP, s.Key())
			}
		}
	})
}
