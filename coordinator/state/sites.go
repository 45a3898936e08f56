package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
)

// PutSite declares a site or replaces one (by namespace/name), audited as
// site.put with the site before and after. The site is validated as the
// inventory file's sites are (inventory.Site.Validate); besides, its name
// must not be a workload's or a node's (they share the namespace/name
// space), and no CIDR may overlap another site's or the overlay pool. Its
// namespace is created when missing. A site's CIDRs need not be covered by
// an approved route: traffic to it flows only once a gateway's approved
// route covers it. Nothing is half-applied: a refused site changes
// nothing.
func (s *State) PutSite(ctx context.Context, actor string, site store.Site) (store.Site, error) {
	site.Labels = maps.Clone(site.Labels)
	site.CIDRs, site.Ports = slices.Clone(site.CIDRs), slices.Clone(site.Ports)
	for i := range site.Ports {
		if site.Ports[i].Protocol == "" {
			site.Ports[i].Protocol = inventory.TCP
		}
	}
	if err := site.Validate(); err != nil {
		return store.Site{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, p := range site.CIDRs {
		if p.Overlaps(s.opts.Pool) {
			return store.Site{}, fmt.Errorf("%w: site %s: %s overlaps the overlay pool %s: give the site's own prefix", ErrInvalid, site.Key(), p, s.opts.Pool)
		}
	}
	key := site.Key()
	detail := map[string]any{"after": site}
	err := s.change(ctx, "site.put", actor, key, detail, func(tx store.Tx) ([]string, error) {
		if err := s.siteNameFree(tx, site); err != nil {
			return nil, err
		}
		sites, err := tx.ListSites()
		if err != nil {
			return nil, err
		}
		for _, o := range sites {
			if o.Key() == key {
				detail["before"] = o
				continue
			}
			for _, p := range site.CIDRs {
				for _, q := range o.CIDRs {
					if p.Overlaps(q) {
						return nil, fmt.Errorf("%w: site %s: %s overlaps %s of site %s: a site address must belong to one site; shrink one of them, or change site %s first",
							ErrConflict, key, p, q, o.Key(), o.Key())
					}
				}
			}
		}
		if err := s.ensureNamespace(tx, site.Namespace); err != nil {
			return nil, err
		}
		if err := tx.PutSite(site); err != nil {
			return nil, err
		}
		return s.eng.UpsertSite(site)
	})
	if err != nil {
		return store.Site{}, err
	}
	return site, nil
}

// siteNameFree refuses a site named like a workload or a node of its
// namespace: sites, workloads and nodes share the namespace/name space.
func (s *State) siteNameFree(tx store.Tx, site store.Site) error {
	ws, err := tx.ListWorkloads()
	if err != nil {
		return err
	}
	for _, w := range ws {
		if w.Key() == site.Key() {
			return fmt.Errorf("%w: site %s: %s is already the name of a workload of node %s: sites, workloads and nodes share their NAMESPACE/NAME names; choose another name",
				ErrConflict, site.Key(), w.Key(), w.Node)
		}
	}
	n, err := tx.GetNode(site.Name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil && n.Namespace == site.Namespace {
		return fmt.Errorf("%w: site %s: %s is already the name of a node: sites, workloads and nodes share their NAMESPACE/NAME names; choose another name",
			ErrConflict, site.Key(), site.Key())
	}
	return nil
}

// DeleteSite removes a site, audited as site.delete with the site as it
// was.
func (s *State) DeleteSite(ctx context.Context, actor, namespace, name string) error {
	key := namespace + "/" + name
	detail := map[string]any{}
	return s.change(ctx, "site.delete", actor, key, detail, func(tx store.Tx) ([]string, error) {
		sites, err := tx.ListSites()
		if err != nil {
			return nil, err
		}
		for _, o := range sites {
			if o.Key() == key {
				detail["before"] = o
			}
		}
		if err := tx.DeleteSite(namespace, name); err != nil {
			return nil, err
		}
		return s.eng.DeleteSite(key)
	})
}

// Sites returns every site ordered by namespace, name.
func (s *State) Sites(ctx context.Context) ([]store.Site, error) {
	var out []store.Site
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListSites()
		return err
	})
	return out, err
}

// siteNamed returns the site whose key is key among sites, or nil.
func siteNamed(sites []store.Site, key string) *store.Site {
	for i := range sites {
		if sites[i].Key() == key {
			return &sites[i]
		}
	}
	return nil
}
