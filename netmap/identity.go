package netmap

import (
	"fmt"
	"sort"
	"strings"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// identities hands out numeric identities, one per distinct (namespace,
// labels, declared ports). Numbers are never reused while the engine
// lives, so a stale rule can never name a new workload.
type identities struct {
	next  view.Identity
	byKey map[string]*identityRef
}

type identityRef struct {
	id   view.Identity
	refs int
}

func newIdentities() identities {
	return identities{next: view.FirstIdentity, byKey: map[string]*identityRef{}}
}

func (s *identities) acquire(key string) view.Identity {
	r, ok := s.byKey[key]
	if !ok {
		r = &identityRef{id: s.next}
		s.next++
		s.byKey[key] = r
	}
	r.refs++
	return r.id
}

func (s *identities) release(key string) {
	if r, ok := s.byKey[key]; ok {
		r.refs--
		if r.refs <= 0 {
			delete(s.byKey, key)
		}
	}
}

// identityKey is the canonical text of what makes two workloads
// indistinguishable to policy apart from their address: namespace, labels
// and named ports (named ports resolve against the destination).
func identityKey(w *inventory.Workload) string {
	var b strings.Builder
	b.WriteString(w.Namespace)
	keys := make([]string, 0, len(w.Labels))
	for k := range w.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(w.Labels[k])
	}
	var ports []string
	for _, p := range w.Ports {
		if p.Name != "" {
			ports = append(ports, fmt.Sprintf("%s=%d/%s", p.Name, p.Port, p.Protocol))
		}
	}
	sort.Strings(ports)
	for _, p := range ports {
		b.WriteByte(1)
		b.WriteString(p)
	}
	return b.String()
}
