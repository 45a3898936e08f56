package inventory

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/latchnet/latch/internal/strictyaml"
)

// Parse reads an inventory file (YAML or JSON). Unknown fields are errors.
// A port without a protocol is TCP. The result is validated; name is used
// in error messages only.
func Parse(name string, data []byte) (*Inventory, error) {
	if err := checkSitePrefixes(data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var inv Inventory
	if err := strictyaml.UnmarshalStrict(data, &inv); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrInvalid, err)
	}
	inv.defaults()
	if err := inv.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &inv, nil
}

func (inv *Inventory) defaults() {
	fix := func(ps []Port) {
		for i := range ps {
			if ps[i].Protocol == "" {
				ps[i].Protocol = TCP
			}
		}
	}
	for i := range inv.Workloads {
		fix(inv.Workloads[i].Ports)
	}
	for i := range inv.Nodes {
		fix(inv.Nodes[i].Ports)
	}
	for i := range inv.Sites {
		fix(inv.Sites[i].Ports)
	}
}

// checkSitePrefixes reports the sites' cidrs that are not prefixes at all,
// with their field paths; the decoder would name neither the field nor
// the site. Everything else is left to the strict decoder and Validate.
func checkSitePrefixes(data []byte) error {
	var doc struct {
		Sites []struct {
			CIDRs []string `json:"cidrs"`
		} `json:"sites"`
	}
	if _, err := strictyaml.Unmarshal(data, &doc); err != nil {
		return nil // the strict decoder reports it
	}
	var errs []string
	for i, s := range doc.Sites {
		for j, c := range s.CIDRs {
			if _, err := netip.ParsePrefix(c); err != nil {
				errs = append(errs, fmt.Sprintf("sites[%d].cidrs[%d]: %q is not a prefix: give an IPv4 network such as 198.19.1.0/24", i, j, c))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(errs, "\n  "))
}
