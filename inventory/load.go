package inventory

import (
	"fmt"

	"github.com/latchnet/latch/internal/strictyaml"
)

// Parse reads an inventory file (YAML or JSON). Unknown fields are errors.
// A port without a protocol is TCP. The result is validated; name is used
// in error messages only.
func Parse(name string, data []byte) (*Inventory, error) {
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
