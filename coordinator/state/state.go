// Package state is the one owner of the coordinator's mutations. Every
// change goes through it: it validates the whole change first, writes the
// store and an audit entry in one transaction, applies the change to the
// view engine (package netmap) inside that transaction so that a refused
// change leaves nothing behind, and publishes the views that changed to
// the nodes' mailboxes (package fanout).
//
// Only packages coordinator (which opens it), coordinator/api and web, and
// tests, import it.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/netmap"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// DefaultPool is the overlay.
var DefaultPool = netip.MustParsePrefix("100.64.0.0/10")

// DefaultNamespace is where a node goes whose token names no namespace.
const DefaultNamespace = "default"

// Log field names.
const (
	logNode   = "node"
	logChange = "change"
	logViews  = "views_changed"
	logErr    = "err"
)

// Errors callers can match.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrNotFound = store.ErrNotFound
	ErrConflict = store.ErrConflict
	// ErrNotGranted: a node asked for an identity nobody granted it
	// (labels its token does not give, a workload no grant covers, a
	// workload SPIFFE ID its entry does not allow).
	ErrNotGranted = errors.New("not granted")
	// ErrLimit: a node asked for more than the coordinator allows.
	ErrLimit = errors.New("over the limit")
)

// DefaultMaxWorkloadsPerNode bounds the workloads one node may register
// (Options.MaxWorkloadsPerNode).
const DefaultMaxWorkloadsPerNode = 64

// Options configure a State.
type Options struct {
	Baseline policy.Baseline // default deny
	Pool     netip.Prefix    // default DefaultPool
	Now      func() time.Time
	Log      *slog.Logger
	// SpiffeMap admits nodes with SPIFFE IDs from a trusted SPIRE
	// deployment (see SpiffeNode); nil admits none without approval.
	SpiffeMap *spiffemap.Map
	// MaxWorkloadsPerNode bounds the workloads one registration may
	// declare; default DefaultMaxWorkloadsPerNode.
	MaxWorkloadsPerNode int
	// GatewayGrace is how long after Open nodes that have not opened a
	// view stream yet still count as online gateways (see failover.go);
	// zero: forever, until they open one and it closes.
	GatewayGrace time.Duration
	// AfterFunc runs f once d has passed and returns a function that
	// stops it; default time.AfterFunc. Tests pass a fake.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// State holds the engine built from the store and the mailboxes.
type State struct {
	st   store.Store
	hub  *fanout.Hub
	opts Options
	ev   events

	mu  sync.Mutex     // serializes changes; must hold to use eng
	eng *netmap.Engine // must hold mu
	// touched is set by a change that modified eng before it could fail;
	// if the change then fails, eng is rebuilt from the store. Must hold mu.
	touched bool

	refusalMu sync.Mutex
	refusals  map[string]refusal // node → its last audited refusal; must hold refusalMu

	gw gateways // online state of the gateways; see failover.go
}

// Open loads everything from the store, computes every view and publishes
// them.
func Open(ctx context.Context, st store.Store, hub *fanout.Hub, opts Options) (*State, error) {
	if opts.Baseline == "" {
		opts.Baseline = policy.BaselineDeny
	}
	if !opts.Pool.IsValid() {
		opts.Pool = DefaultPool
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxWorkloadsPerNode <= 0 {
		opts.MaxWorkloadsPerNode = DefaultMaxWorkloadsPerNode
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	s := &State{st: st, hub: hub, opts: opts, ev: newEvents(), refusals: map[string]refusal{}, gw: newGateways()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return nil, err
	}
	for _, n := range s.eng.Nodes() {
		hub.Publish(s.eng.View(n))
	}
	s.startGrace()
	return s, nil
}

// loadLocked rebuilds the engine from the store. Versions start above the
// wall clock in nanoseconds, so they never repeat across restarts. Must
// hold s.mu.
func (s *State) loadLocked(ctx context.Context) error {
	in := netmap.Input{Baseline: s.opts.Baseline, VersionBase: uint64(s.opts.Now().UnixNano())}
	err := s.st.View(ctx, func(tx store.Tx) error {
		nss, err := tx.ListNamespaces()
		if err != nil {
			return err
		}
		for _, ns := range nss {
			in.Namespaces = append(in.Namespaces, inventory.Namespace{Name: ns.Name, Labels: ns.Labels, Monitor: ns.Mode == store.ModeMonitor})
		}
		nodes, err := tx.ListNodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			in.Nodes = append(in.Nodes, toInventory(n))
		}
		if in.Workloads, err = tx.ListWorkloads(); err != nil {
			return err
		}
		ps, err := tx.ListPolicies()
		if err != nil {
			return err
		}
		for _, p := range ps {
			parsed, err := policy.Parse("stored policy "+p.Namespace+"/"+p.Name, []byte(p.YAML))
			if err != nil {
				return fmt.Errorf("the store holds a policy that no longer validates: %w", err)
			}
			in.Policies = append(in.Policies, parsed...)
		}
		if in.Sites, err = tx.ListSites(); err != nil {
			return err
		}
		routes, err := tx.ListRoutes()
		if err != nil {
			return err
		}
		in.Routes = approvedByNode(routes)
		in.Offline = s.gw.offlineList()
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading state: %w", err)
	}
	eng, err := netmap.New(in)
	if err != nil {
		return fmt.Errorf("computing views: %w", err)
	}
	s.eng = eng
	return nil
}

func toInventory(n store.Node) inventory.Node {
	return inventory.Node{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, IP: n.IP,
		PublicKey: n.PublicKey, Endpoints: n.Endpoints, Ports: n.Ports}
}

// change runs one mutation: fn writes the store (through tx) and applies
// the change to the engine, returning the nodes whose views changed. If fn
// fails nothing is written and the engine is unchanged (engine methods
// validate before they mutate). If the commit fails after the engine
// changed, the engine is rebuilt from the store. The audit entry is
// appended in the same transaction after fn, so fn may fill in detail
// (say, the object as it was before).
func (s *State) change(ctx context.Context, what, actor, object string, detail any, fn func(tx store.Tx) ([]string, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []string
	s.touched = false
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		changed, err = fn(tx)
		if err == nil {
			s.touched = true // the engine took the change; the commit may still fail
		} else {
			return err
		}
		d, _ := json.Marshal(detail)
		_, err = tx.AppendAudit(store.AuditEntry{Time: s.opts.Now(), Actor: actor, Action: what, Object: object, Detail: string(d)})
		return err
	})
	if err != nil {
		if s.touched {
			s.opts.Log.Warn("change failed after the engine was modified; reloading it from the store", logChange, what, logErr, err)
			if rerr := s.loadLocked(ctx); rerr != nil {
				return errors.Join(err, rerr)
			}
			for _, n := range s.eng.Nodes() {
				s.hub.Publish(s.eng.View(n))
			}
		}
		return err
	}
	// A node that joined, or any node the change named, takes its online
	// state (after the grace period a new node is offline until it
	// connects).
	for _, n := range changed {
		changed = union(changed, s.syncOnlineLocked(n))
	}
	for _, n := range changed {
		if v := s.eng.View(n); v != nil {
			s.hub.Publish(v)
		} else {
			s.hub.Remove(n)
		}
	}
	s.opts.Log.Info("state changed", logChange, what, "object", object, logViews, len(changed))
	s.ev.publish(Event{Time: s.opts.Now(), Action: what, Object: object, Actor: actor})
	return nil
}

// View returns the current view of a node, or nil.
func (s *State) View(node string) *view.View { return s.hub.Latest(node) }

// MutualPeers reports whether nodes a and b hold each other as peers in
// their current views: the relay's gate (package relay), asked on every
// frame. It takes the hub's lock twice and searches two sorted peer
// lists.
func (s *State) MutualPeers(a, b string) bool {
	return a != b && holdsPeer(s.hub.Latest(a), b) && holdsPeer(s.hub.Latest(b), a)
}

func holdsPeer(v *view.View, peer string) bool {
	if v == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(v.Peers, peer, func(p view.Peer, name string) int { return strings.Compare(p.Node, name) })
	return ok
}

// Hub returns the mailboxes the node API streams from.
func (s *State) Hub() *fanout.Hub { return s.hub }

// ensureNamespace creates ns in the store and the engine when missing.
func (s *State) ensureNamespace(tx store.Tx, ns string) error {
	if _, err := tx.GetNamespace(ns); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("%w: namespace %q: %s", ErrInvalid, ns, errs[0])
	}
	if err := tx.PutNamespace(store.Namespace{Name: ns, Mode: "enforce"}); err != nil {
		return err
	}
	s.touched = true
	_, err := s.eng.UpsertNamespace(inventory.Namespace{Name: ns})
	return err
}

// PutNamespace creates a namespace or changes its labels and mode.
func (s *State) PutNamespace(ctx context.Context, actor string, ns store.Namespace) error {
	if errs := validation.IsDNS1123Label(ns.Name); len(errs) > 0 {
		return fmt.Errorf("%w: namespace %q: %s", ErrInvalid, ns.Name, errs[0])
	}
	if ns.Mode == "" {
		ns.Mode = "enforce"
	}
	if ns.Mode != "enforce" && ns.Mode != "monitor" {
		return fmt.Errorf("%w: namespace %s: mode %q: must be enforce or monitor", ErrInvalid, ns.Name, ns.Mode)
	}
	inv := inventory.Inventory{Namespaces: []inventory.Namespace{{Name: ns.Name, Labels: ns.Labels}}}
	if err := inv.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	detail := map[string]any{"after": ns}
	return s.change(ctx, "namespace.put", actor, ns.Name, detail, func(tx store.Tx) ([]string, error) {
		if old, err := tx.GetNamespace(ns.Name); err == nil {
			detail["before"] = old
		}
		if err := tx.PutNamespace(ns); err != nil {
			return nil, err
		}
		return s.eng.UpsertNamespace(inventory.Namespace{Name: ns.Name, Labels: ns.Labels, Monitor: ns.Mode == store.ModeMonitor})
	})
}

// ApplyPolicies validates every document of files and, only if all are
// valid, stores and applies them together. It returns the keys applied.
// Every policy must name its namespace; ApplyPoliciesWith applies
// kubectl's namespace rules instead.
func (s *State) ApplyPolicies(ctx context.Context, actor string, files ...policy.File) ([]string, error) {
	return s.ApplyPoliciesWith(ctx, actor, policy.ParseOptions{}, files...)
}

// ApplyPoliciesWith is ApplyPolicies reading files with opts (a default
// namespace for policies that name none, as kubectl's -n).
func (s *State) ApplyPoliciesWith(ctx context.Context, actor string, opts policy.ParseOptions, files ...policy.File) ([]string, error) {
	ps, err := policy.ParseFilesWith(opts, files...)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w: no NetworkPolicy documents found", ErrInvalid)
	}
	type stored struct{ key, yaml string }
	var docs []stored
	var keys []string
	for _, p := range ps {
		out, err := PolicyYAML(p)
		if err != nil {
			return nil, err
		}
		docs = append(docs, stored{p.Key(), out})
		keys = append(keys, p.Key())
	}
	before, after := map[string]string{}, map[string]string{}
	for _, d := range docs {
		after[d.key] = d.yaml
	}
	detail := map[string]any{"before": before, "after": after}
	err = s.change(ctx, "policy.apply", actor, fmt.Sprint(keys), detail, func(tx store.Tx) ([]string, error) {
		changed := map[string]bool{}
		old, err := tx.ListPolicies()
		if err != nil {
			return nil, err
		}
		for _, p := range old {
			if _, ok := after[p.Namespace+"/"+p.Name]; ok {
				before[p.Namespace+"/"+p.Name] = p.YAML
			}
		}
		for i, p := range ps {
			if err := s.ensureNamespace(tx, p.Namespace); err != nil {
				return nil, err
			}
			if err := tx.PutPolicy(store.Policy{Namespace: p.Namespace, Name: p.Name, YAML: docs[i].yaml, UpdatedAt: s.opts.Now()}); err != nil {
				return nil, err
			}
		}
		for _, p := range ps {
			s.touched = true
			ch, err := s.eng.UpsertPolicy(p)
			if err != nil {
				return nil, err
			}
			for _, n := range ch {
				changed[n] = true
			}
		}
		return keysOf(changed), nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// PolicyYAML is a policy as the store keeps it.
func PolicyYAML(p *policy.Policy) (string, error) {
	out, err := yaml.Marshal(&p.NetworkPolicy)
	if err != nil {
		return "", fmt.Errorf("encoding policy %s: %w", p.Key(), err)
	}
	return string(out), nil
}

// DeletePolicy removes one policy.
func (s *State) DeletePolicy(ctx context.Context, actor, namespace, name string) error {
	key := namespace + "/" + name
	detail := map[string]any{}
	return s.change(ctx, "policy.delete", actor, key, detail, func(tx store.Tx) ([]string, error) {
		ps, err := tx.ListPolicies()
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if p.Namespace == namespace && p.Name == name {
				detail["before"] = map[string]string{key: p.YAML}
			}
		}
		if err := tx.DeletePolicy(namespace, name); err != nil {
			return nil, err
		}
		return s.eng.DeletePolicy(key)
	})
}

// Enrollment is what a node asks for when it enrolls with a token.
type Enrollment struct {
	TokenID    string
	SecretHash []byte
	Name       string
	// Labels the node expects. A node's labels are exactly its token's:
	// if Labels is not empty and differs from them, enrollment is refused
	// (ErrNotGranted) and the token is not used up.
	Labels map[string]string
	// Routes are the routes the node will advertise when it registers;
	// enrollment is refused, and the token not used up, when Register
	// would refuse them (ErrInvalid, ErrConflict).
	Routes []wire.Route
}

// Cert is what a signer reports about the certificate it issued.
type Cert struct {
	Serial   string // hex
	NotAfter time.Time
}

// Enroll consumes the join token, records the node with an overlay
// address, and calls sign inside the same transaction to issue its first
// SVID: if signing fails, the token is not used up and nothing is stored.
func (s *State) Enroll(ctx context.Context, e Enrollment, sign func(store.Node) (Cert, error)) (store.Node, error) {
	if errs := validation.IsDNS1123Label(e.Name); len(errs) > 0 {
		return store.Node{}, fmt.Errorf("%w: node name %q: %s", ErrInvalid, e.Name, errs[0])
	}
	var node store.Node
	err := s.change(ctx, "node.enroll", "node:"+e.Name, e.Name, map[string]string{"token": e.TokenID}, func(tx store.Tx) ([]string, error) {
		tok, err := tx.ConsumeToken(e.TokenID, e.SecretHash, s.opts.Now())
		if err != nil {
			return nil, err
		}
		if _, err := tx.GetNode(e.Name); err == nil {
			return nil, fmt.Errorf("%w: node %q is already enrolled: delete it (latch admin node delete %s) or choose another name", ErrConflict, e.Name, e.Name)
		}
		ns := tok.Namespace
		if ns == "" {
			ns = DefaultNamespace
		}
		if len(e.Routes) > 0 {
			ps, err := s.checkRoutes(e.Name, e.Routes)
			if err != nil {
				return nil, err
			}
			all, err := tx.ListRoutes()
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				if err := overlapsOthers(all, e.Name, p); err != nil {
					return nil, err
				}
			}
		}
		if len(e.Labels) > 0 && !maps.Equal(e.Labels, tok.Labels) {
			return nil, fmt.Errorf("%w: node %s asks for the labels {%s}, but its join token grants {%s}: a node's labels come from its join token (`latch admin token create --labels ...`), not from the node; enroll without --labels, or with a token that grants them",
				ErrNotGranted, e.Name, labelString(e.Labels), labelString(tok.Labels))
		}
		sites, err := tx.ListSites()
		if err != nil {
			return nil, err
		}
		if siteNamed(sites, ns+"/"+e.Name) != nil {
			return nil, fmt.Errorf("%w: node %s: %s/%s is already the name of a site: sites, workloads and nodes share their NAMESPACE/NAME names; enroll the node under another name",
				ErrConflict, e.Name, ns, e.Name)
		}
		if err := s.ensureNamespace(tx, ns); err != nil {
			return nil, err
		}
		labels := maps.Clone(tok.Labels)
		ip, err := tx.AllocateAddr("node/"+e.Name, s.opts.Pool)
		if err != nil {
			return nil, err
		}
		now := s.opts.Now()
		node = store.Node{Name: e.Name, Namespace: ns, Labels: labels, IP: ip, CreatedAt: now, LastSeen: now}
		cert, err := sign(node)
		if err != nil {
			return nil, fmt.Errorf("signing the node's certificate: %w", err)
		}
		node.CertSerial, node.CertExpires = cert.Serial, cert.NotAfter
		if err := tx.PutNode(node); err != nil {
			return nil, err
		}
		if err := tx.PutGrants(e.Name, grant.Set{Workloads: tok.Workloads}); err != nil {
			return nil, err
		}
		return s.eng.UpsertNode(toInventory(node))
	})
	return node, err
}

// RenewGrace is how long a node's previous certificate is still accepted
// after a renewal: until the node first uses its new certificate, and at
// most this long. It covers a renewal answer lost on the way (the node
// renews again with the certificate it holds) and connections the node
// opened with the previous certificate.
const RenewGrace = 2 * time.Minute

// labelString is labels as k=v,k=v, sorted.
func labelString(l map[string]string) string {
	kv := make([]string, 0, len(l))
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

// Renew records a node's new certificate, issued by sign inside the
// transaction. presented is the serial of the certificate the node
// authenticated with: its current one, or its previous one during the
// grace (RenewGrace) when the answer to a renewal was lost. The presented
// certificate becomes the previous one, accepted for the rest of the
// grace; every other certificate of the node is refused from then on.
func (s *State) Renew(ctx context.Context, name, presented string, sign func(store.Node) (Cert, error)) (store.Node, error) {
	var node store.Node
	detail := map[string]string{"presented": presented}
	err := s.change(ctx, "node.renew", "node:"+name, name, detail, func(tx store.Tx) ([]string, error) {
		var err error
		if node, err = tx.GetNode(name); err != nil {
			return nil, err
		}
		now := s.opts.Now()
		grace := store.GraceCert{Node: name, Serial: presented, Until: now.Add(RenewGrace)}
		if !sameSerial(presented, node.CertSerial) {
			prev, err := s.graceCert(tx, name, presented, now)
			if err != nil {
				return nil, err
			}
			grace.Until = prev.Until // renewing again does not extend the grace
		}
		cert, err := sign(node)
		if err != nil {
			return nil, fmt.Errorf("signing the node's certificate: %w", err)
		}
		node.CertSerial, node.CertExpires = cert.Serial, cert.NotAfter
		node.LastSeen = now
		detail["serial"] = cert.Serial
		if err := tx.PutNode(node); err != nil {
			return nil, err
		}
		return nil, tx.PutGraceCert(grace)
	})
	return node, err
}

// ErrCertReplaced: the certificate is not the node's current one (nor its
// previous one within the grace after a renewal).
var ErrCertReplaced = errors.New("certificate replaced")

// graceCert returns the node's previous certificate if it has serial and
// its grace lasts beyond now, else an error wrapping ErrCertReplaced.
func (s *State) graceCert(tx store.Tx, name, serial string, now time.Time) (store.GraceCert, error) {
	prev, err := tx.GetGraceCert(name)
	switch {
	case err == nil && sameSerial(serial, prev.Serial) && now.Before(prev.Until):
		return prev, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.GraceCert{}, err
	}
	return store.GraceCert{}, fmt.Errorf("certificate %s of node %q was replaced (by a renewal, or it is from an earlier enrollment of that name): %w; "+
		"the node must use its current certificate, or enroll again with a new join token", serial, name, ErrCertReplaced)
}

// sameSerial compares certificate serials in hex, ignoring case, colons
// and leading zeros.
func sameSerial(a, b string) bool {
	canon := func(s string) string {
		return strings.TrimLeft(strings.ToLower(strings.ReplaceAll(s, ":", "")), "0")
	}
	return a != "" && b != "" && canon(a) == canon(b)
}

// Registration is what a node reports about itself.
type Registration struct {
	PublicKey string
	Endpoints []netip.AddrPort
	Ports     []inventory.Port
	// Workloads as declared: IP and Node are assigned here; their labels
	// must match a grant exactly (see package grant).
	Workloads []inventory.Workload
	// WorkloadIDs maps a workload (namespace/name) to the SPIFFE ID it
	// declares (well-formed, of SPIRE's trust domain: the API checks); it
	// must match a workload ID pattern the node is granted, and becomes
	// the label policy.SpiffeIDLabel.
	WorkloadIDs map[string]string
	// SpiffeID is the node's own SPIFFE ID when its SVID is from SPIRE
	// (verified by the API); the --spiffe-map entry it matches adds its
	// grants to the node's own.
	SpiffeID string
	// Routes are the subnets the node advertises as a gateway; they
	// replace those it advertised before (see setRoutes).
	Routes []wire.Route
}

// Register records the node's WireGuard key, endpoints and the complete
// list of its workloads, assigning each workload a stable overlay address.
// Every workload must be granted to the node (its stored grants, plus
// those of the --spiffe-map entry its SPIFFE ID matches); otherwise the
// whole registration is refused with ErrNotGranted, nothing is changed,
// and the refusal is audited (node.register.refused). An invalid route
// (ErrInvalid) or one overlapping another node's (ErrConflict) refuses the
// whole registration too: nothing is half-applied.
func (s *State) Register(ctx context.Context, name string, r Registration) (store.Node, []inventory.Workload, error) {
	if r.PublicKey == "" {
		return store.Node{}, nil, fmt.Errorf("%w: register: publicKey is required", ErrInvalid)
	}
	if len(r.Workloads) > s.opts.MaxWorkloadsPerNode {
		return store.Node{}, nil, fmt.Errorf("%w: node %s declares %d workloads, the coordinator allows at most %d per node (latch coordinator --max-workloads-per-node)",
			ErrLimit, name, len(r.Workloads), s.opts.MaxWorkloadsPerNode)
	}
	seen := map[string]bool{}
	for _, w := range r.Workloads {
		if seen[w.Key()] {
			return store.Node{}, nil, fmt.Errorf("%w: workload %s is declared twice", ErrInvalid, w.Key())
		}
		seen[w.Key()] = true
		// Names and labels are checked before anything is looked up, so a
		// refusal (and its audit entry) only ever quotes valid ones.
		if errs := validation.IsDNS1123Label(w.Namespace); len(errs) > 0 {
			return store.Node{}, nil, fmt.Errorf("%w: workload %.80q: namespace %.80q: %s", ErrInvalid, w.Name, w.Namespace, errs[0])
		}
		if errs := validation.IsDNS1123Subdomain(w.Name); len(errs) > 0 {
			return store.Node{}, nil, fmt.Errorf("%w: workload %s/%.80q: name: %s", ErrInvalid, w.Namespace, w.Name, errs[0])
		}
		for k, v := range w.Labels {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return store.Node{}, nil, fmt.Errorf("%w: workload %s: label key %.80q: %s", ErrInvalid, w.Key(), k, errs[0])
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				return store.Node{}, nil, fmt.Errorf("%w: workload %s: label %s=%.80q: %s", ErrInvalid, w.Key(), k, v, errs[0])
			}
		}
		for k := range w.Labels {
			if policy.IsReservedLabel(k) {
				return store.Node{}, nil, fmt.Errorf("%w: workload %s: the label %s is set by the coordinator (from the workload's SPIFFE ID, spiffe_id=), not declared", ErrInvalid, w.Key(), k)
			}
		}
	}
	routes, err := s.checkRoutes(name, r.Routes)
	if err != nil {
		return store.Node{}, nil, err
	}
	var (
		node store.Node
		ws   []inventory.Workload
	)
	err = s.change(ctx, "node.register", "node:"+name, name, r, func(tx store.Tx) ([]string, error) {
		var err error
		if node, err = tx.GetNode(name); err != nil {
			return nil, err
		}
		granted, err := s.grantsOf(tx, name, r.SpiffeID)
		if err != nil {
			return nil, err
		}
		for _, w := range r.Workloads {
			if err := checkGranted(name, granted, w, r.WorkloadIDs[w.Key()]); err != nil {
				return nil, err
			}
		}
		sites, err := tx.ListSites()
		if err != nil {
			return nil, err
		}
		for _, w := range r.Workloads {
			if siteNamed(sites, w.Key()) != nil {
				return nil, fmt.Errorf("%w: workload %s: %s is already the name of a site: sites, workloads and nodes share their NAMESPACE/NAME names; rename the workload, or have an admin rename the site",
					ErrConflict, w.Key(), w.Key())
			}
		}
		// Routes before anything touches the engine: a refused route
		// leaves it as it was.
		if err := s.setRoutes(tx, name, r.Routes, routes); err != nil {
			return nil, err
		}
		node.PublicKey, node.Endpoints, node.Ports = r.PublicKey, r.Endpoints, r.Ports
		node.LastSeen = s.opts.Now()
		old, err := tx.ListWorkloads()
		if err != nil {
			return nil, err
		}
		for _, w := range old {
			if w.Node == name && !seen[w.Key()] {
				if err := tx.ReleaseAddr("wl/" + w.Key()); err != nil {
					return nil, err
				}
			}
		}
		ws = make([]inventory.Workload, len(r.Workloads))
		for i, w := range r.Workloads {
			// Granted: an admin named the namespace, so it may be created.
			if err := s.ensureNamespace(tx, w.Namespace); err != nil {
				return nil, err
			}
			if id := r.WorkloadIDs[w.Key()]; id != "" {
				w.Labels = maps.Clone(w.Labels)
				if w.Labels == nil {
					w.Labels = map[string]string{}
				}
				w.Labels[policy.SpiffeIDLabel] = policy.SpiffeLabelValue(id)
			}
			w.Node = name
			if w.IP, err = tx.AllocateAddr("wl/"+w.Key(), s.opts.Pool); err != nil {
				return nil, err
			}
			ws[i] = w
		}
		inv := inventory.Inventory{Namespaces: []inventory.Namespace{}, Workloads: ws}
		for _, w := range ws {
			inv.Namespaces = appendNS(inv.Namespaces, w.Namespace)
		}
		if err := inv.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if err := tx.PutNode(node); err != nil {
			return nil, err
		}
		if err := tx.SetWorkloads(name, ws); err != nil {
			return nil, err
		}
		changed, err := s.eng.SetNode(toInventory(node), slices.Clone(ws))
		if err != nil {
			return nil, err
		}
		// Withdrawing an approved route changes what the node carries.
		return s.syncRoutes(tx, name, changed)
	})
	if errors.Is(err, ErrNotGranted) {
		s.auditRefusal(ctx, name, err)
	} else if err == nil {
		s.refusalMu.Lock()
		delete(s.refusals, name)
		s.refusalMu.Unlock()
	}
	return node, ws, err
}

func appendNS(list []inventory.Namespace, ns string) []inventory.Namespace {
	for _, n := range list {
		if n.Name == ns {
			return list
		}
	}
	return append(list, inventory.Namespace{Name: ns})
}

// DeleteNode removes a node and its workloads, revokes its certificate and
// frees its addresses; its peers drop it.
func (s *State) DeleteNode(ctx context.Context, actor, name string) error {
	detail := map[string]any{}
	return s.change(ctx, "node.delete", actor, name, detail, func(tx store.Tx) ([]string, error) {
		if node, err := tx.GetNode(name); err == nil {
			detail["before"] = node
		}
		return s.deleteNode(tx, name)
	})
}

// deleteNode removes a node inside a change: its workloads and addresses,
// its certificate serial (revoked) and its SPIFFE ID record. Must hold
// s.mu.
func (s *State) deleteNode(tx store.Tx, name string) ([]string, error) {
	node, err := tx.GetNode(name)
	if err != nil {
		return nil, err
	}
	if err := s.forgetSpiffeNode(tx, name); err != nil {
		return nil, err
	}
	ws, err := tx.ListWorkloads()
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.Node == name {
			if err := tx.ReleaseAddr("wl/" + w.Key()); err != nil {
				return nil, err
			}
		}
	}
	if node.CertSerial != "" {
		if err := tx.RevokeSerial(node.CertSerial, s.opts.Now()); err != nil {
			return nil, err
		}
	}
	if err := tx.ReleaseAddr("node/" + name); err != nil {
		return nil, err
	}
	if err := tx.DeleteNode(name); err != nil {
		return nil, err
	}
	changed, err := s.eng.DeleteNode(name)
	if err != nil {
		return nil, err
	}
	// The store dropped the node's routes with it; the engine keeps routes
	// of nodes it does not hold, so a node enrolled later under the same
	// name would inherit them: forget them.
	s.touched = true
	more, err := s.eng.SetApprovedRoutes(name, nil)
	if err != nil {
		return nil, err
	}
	return union(changed, more), nil
}

// NodeForCert returns the node a verified certificate belongs to. It
// accepts only the node's current certificate, and its previous one for
// the grace after a renewal (RenewGrace), which the first use of the
// current one ends. So the certificates of a deleted node stay refused
// when its name is enrolled again, and a renewed certificate is worthless
// soon after.
func (s *State) NodeForCert(ctx context.Context, name, serial string) (store.Node, error) {
	node, endGrace, err := s.checkCert(ctx, name, serial)
	if err != nil || !endGrace {
		return node, err
	}
	// The node uses its current certificate: end the previous one's grace.
	// Without an audit entry: it is a sighting, not a change.
	err = s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetNode(name)
		if err != nil || !sameSerial(serial, cur.CertSerial) {
			return err
		}
		return tx.DeleteGraceCert(name)
	})
	return node, err
}

// CheckCert is NodeForCert without its effect: it reports whether the
// certificate with serial still authorizes node name (open streams check
// it again and again).
func (s *State) CheckCert(ctx context.Context, name, serial string) error {
	_, _, err := s.checkCert(ctx, name, serial)
	return err
}

// checkCert returns the node of a certificate, and whether the
// certificate is the node's current one while its previous one is in its
// grace (which the caller may end).
func (s *State) checkCert(ctx context.Context, name, serial string) (node store.Node, endGrace bool, err error) {
	err = s.st.View(ctx, func(tx store.Tx) error {
		revoked, err := tx.IsRevoked(serial)
		if err != nil {
			return err
		}
		if revoked {
			return fmt.Errorf("certificate %s of node %q is revoked: the node was deleted; enroll it again with a new join token", serial, name)
		}
		if node, err = tx.GetNode(name); err != nil {
			return fmt.Errorf("%w: enroll it again with a new join token", err) // it names the node
		}
		if !sameSerial(serial, node.CertSerial) {
			_, err = s.graceCert(tx, name, serial, s.opts.Now())
			return err
		}
		_, err = tx.GetGraceCert(name)
		switch {
		case err == nil:
			endGrace = true
		case errors.Is(err, store.ErrNotFound):
			err = nil
		}
		return err
	})
	return node, endGrace, err
}

// MaxJoinTokenTTL is the longest a join token may be valid.
const MaxJoinTokenTTL = 30 * 24 * time.Hour

// AddToken stores a join token (made by package ca) with an audit entry.
func (s *State) AddToken(ctx context.Context, actor string, t store.Token) error {
	if t.Namespace != "" {
		if errs := validation.IsDNS1123Label(t.Namespace); len(errs) > 0 {
			return fmt.Errorf("%w: namespace %q: %s", ErrInvalid, t.Namespace, errs[0])
		}
	}
	if t.UsesLeft < 1 {
		return fmt.Errorf("%w: a token needs at least one use", ErrInvalid)
	}
	if t.ExpiresAt.Sub(s.opts.Now()) > MaxJoinTokenTTL {
		return fmt.Errorf("%w: a join token may be valid for at most %s: choose a shorter lifetime", ErrInvalid, Days(MaxJoinTokenTTL))
	}
	if err := grant.CheckLabels("the token's labels", t.Labels); err != nil {
		return errGrantInvalid(err)
	}
	if err := (grant.Set{Workloads: t.Workloads}).Check(); err != nil {
		return errGrantInvalid(err)
	}
	return s.change(ctx, "token.create", actor, t.ID, map[string]any{"namespace": t.Namespace, "labels": t.Labels, "workloads": t.Workloads, "uses": t.UsesLeft, "expires": t.ExpiresAt}, func(tx store.Tx) ([]string, error) {
		return nil, tx.PutToken(t)
	})
}

// Read runs fn against a consistent snapshot of the store.
func (s *State) Read(ctx context.Context, fn func(store.Tx) error) error { return s.st.View(ctx, fn) }

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// RevokeToken revokes a join token so it can no longer enroll nodes.
func (s *State) RevokeToken(ctx context.Context, actor, id string) error {
	return s.change(ctx, "token.revoke", actor, id, nil, func(tx store.Tx) ([]string, error) {
		return nil, tx.RevokeToken(id)
	})
}
