// Package store is the coordinator's persistent store: namespaces, nodes,
// workloads, sites, policies, join tokens, revoked certificate serials, overlay
// address allocations, the audit log, a small key/value table, and the
// web console's users, sessions and API tokens.
//
// The Store interface hides the backend. OpenSQLite opens the embedded
// default (pure-Go SQLite, WAL, synchronous=FULL); a PostgreSQL backend can
// implement the same interface. Every method of Tx runs inside the
// transaction that Store.Update or Store.View opened, so a caller can read,
// decide, write and append the audit entry atomically.
//
// Only packages coordinator (which opens it), coordinator/state,
// coordinator/api and web, and tests, import it. Only the state layer writes: it is the one owner of
// mutations, which writes the store, records the audit entry and triggers
// view recomputation. The others read through it (state.Read hands them a
// store.Tx) and use the record types.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
)

// Sentinel errors. Methods wrap them with context ("node \"a\": %w"); match
// them with errors.Is.
var (
	// ErrNotFound: the named object does not exist. ConsumeToken also
	// returns it when the secret does not match, so that a caller without
	// the secret cannot tell a wrong secret from an unknown token.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change contradicts what is stored (an address or a
	// workload name already in use, a namespace still in use, a schema
	// newer than this code).
	ErrConflict = errors.New("conflict")
	// ErrTokenUsed: the join token has no uses left.
	ErrTokenUsed = errors.New("join token already used")
	// ErrTokenExpired: the join token is past its expiry.
	ErrTokenExpired = errors.New("join token expired")
	// ErrTokenRevoked: the join token was revoked.
	ErrTokenRevoked = errors.New("join token revoked")
	// ErrPoolExhausted: the address pool has no free address left.
	ErrPoolExhausted = errors.New("address pool exhausted")
)

// Namespace modes.
const (
	// ModeEnforce drops traffic that policy denies.
	ModeEnforce = "enforce"
	// ModeMonitor drops nothing and reports would-be drops.
	ModeMonitor = "monitor"
)

// Namespace groups nodes, workloads and policies.
type Namespace struct {
	Name   string
	Labels map[string]string
	// Mode is ModeEnforce or ModeMonitor.
	Mode string
}

// Node is a machine in the overlay, as the coordinator knows it.
type Node struct {
	Name, Namespace string
	Labels          map[string]string
	// IP is the node's overlay address.
	IP netip.Addr
	// PublicKey is the node's WireGuard public key, base64; "" until the
	// node registers.
	PublicKey string
	// Endpoints are the node's underlay addresses.
	Endpoints []netip.AddrPort
	// Ports are the ports the node itself serves.
	Ports []inventory.Port
	// CertSerial is the serial (hex) of the node's current SVID.
	CertSerial          string
	CreatedAt, LastSeen time.Time
	// CertExpires is when the node's current SVID expires (zero if
	// unknown: nodes enrolled before this was recorded).
	CertExpires time.Time
}

// Workload is a workload declared by a node; its Node field names the node.
// Its key (namespace/name) is unique across all nodes.
type Workload = inventory.Workload

// Site is a network of agentless hosts an admin declared (see
// inventory.Site). Its key (namespace/name) is unique among sites; the
// state layer keeps it apart from the workloads' and nodes' keys.
type Site = inventory.Site

// Policy is one NetworkPolicy, kept as the YAML the admin supplied.
type Policy struct {
	Namespace, Name, YAML string
	UpdatedAt             time.Time
}

// Token is a join token. The store keeps only a hash of its secret.
type Token struct {
	ID         string
	SecretHash []byte
	// Namespace and Labels are given to the node that enrolls with it.
	Namespace string
	Labels    map[string]string
	// Workloads are the workloads the node may host (grant.Set.Workloads),
	// copied to the node at enrollment.
	Workloads []grant.Workload
	// UsesLeft is how many more enrollments the token allows; 0 means used
	// up.
	UsesLeft int
	// ExpiresAt must be set: a token that never expires is refused.
	ExpiresAt, CreatedAt time.Time
	Revoked              bool
}

// Statuses of a SpiffeNode.
const (
	// SpiffePending: the ID matched no mapping; it waits for an admin.
	SpiffePending = "pending"
	// SpiffeRejected: an admin rejected the ID; it is refused.
	SpiffeRejected = "rejected"
	// SpiffeAdmitted: the ID is the node Name.
	SpiffeAdmitted = "admitted"
)

// SpiffeNode is what the coordinator knows of a SPIFFE ID from a trusted
// SPIRE deployment that presented itself as a node.
type SpiffeNode struct {
	// ID is the SPIFFE ID, spiffe://td/path.
	ID string
	// Name is the node name the ID maps to (its last path segment).
	Name string
	// Status is SpiffePending, SpiffeRejected or SpiffeAdmitted.
	Status              string
	FirstSeen, LastSeen time.Time
}

// Statuses of a Route.
const (
	// RouteAdvertised: the node advertises it; it waits for an admin.
	RouteAdvertised = "advertised"
	// RouteApproved: an admin approved it.
	RouteApproved = "approved"
	// RouteRejected: an admin rejected it.
	RouteRejected = "rejected"
)

// Route is a subnet a node advertises as a gateway, and what an admin
// decided about it.
type Route struct {
	Node   string
	Prefix netip.Prefix
	SNAT   bool
	// Status is RouteAdvertised, RouteApproved or RouteRejected.
	Status string
	// AdvertisedAt is when the node first advertised it (it keeps that
	// time while the node goes on advertising it).
	AdvertisedAt time.Time
	// DecidedAt and DecidedBy are when and by whom it was last approved
	// or rejected; zero and "" while it waits.
	DecidedAt time.Time
	DecidedBy string
}

// GraceCert is a node's previous certificate during the short grace after
// a renewal: the coordinator accepts it until Until, so that a node whose
// renewal answer was lost, or whose open connections still carry the old
// certificate, is not cut off at once.
type GraceCert struct {
	Node string
	// Serial is the certificate's serial, hex.
	Serial string
	Until  time.Time
}

// AuditEntry is one record of the audit log. AppendAudit assigns ID.
type AuditEntry struct {
	ID                            int64
	Time                          time.Time
	Actor, Action, Object, Detail string
}

// User is a person who may use the web console or the admin API.
type User struct {
	Name string
	// Role is "admin" (may change things) or "viewer" (reads only); the
	// store does not interpret it.
	Role string
	// PasswordHash is an encoded argon2id hash (package auth).
	PasswordHash string
	CreatedAt    time.Time
}

// Session is a logged-in console session. The store keeps only a hash of
// the session id that the browser holds in its cookie.
type Session struct {
	IDHash []byte
	User   string
	// CSRF is the token the console must send back on every change.
	CSRF                 string
	CreatedAt, ExpiresAt time.Time
}

// APIToken is a bearer token for automation. The store keeps only a hash
// of its secret.
type APIToken struct {
	ID, Name, Role string
	SecretHash     []byte
	CreatedBy      string
	// ExpiresAt is zero only for a token stored by an older version,
	// before an expiry was required (state: it expires a year after
	// CreatedAt).
	CreatedAt, ExpiresAt time.Time
	Revoked              bool
}

// Store is the coordinator's persistent store.
//
// Reading back: times are in UTC, without monotonic clock reading; empty
// maps and slices read back as nil; lists are ordered by key.
type Store interface {
	// Update runs fn in one read-write transaction: all of it commits or
	// none of it. Writers are serialized. If fn returns an error or panics,
	// nothing is written and that error (or panic) is passed on. When Update
	// returns nil the change is durable. fn must not call Update (it would
	// wait for itself); it may call View, which does not see fn's writes.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction that sees one consistent
	// snapshot. Writing methods of Tx fail inside View.
	View(ctx context.Context, fn func(Tx) error) error
	// Close releases the store. The caller must not be running Update or
	// View.
	Close() error
}

// Tx is the set of operations available inside a transaction. A Tx must not
// be used after the function it was passed to returns, nor by two
// goroutines at once.
type Tx interface {
	// PutNamespace creates or replaces a namespace.
	PutNamespace(Namespace) error
	GetNamespace(name string) (Namespace, error)
	ListNamespaces() ([]Namespace, error)
	// DeleteNamespace fails with ErrConflict while nodes, workloads,
	// policies or sites are in the namespace.
	DeleteNamespace(name string) error

	// PutNode creates or replaces a node; its namespace must exist. A
	// public key another node has registered is ErrConflict.
	PutNode(Node) error
	GetNode(name string) (Node, error)
	ListNodes() ([]Node, error)
	// DeleteNode deletes a node and its workloads. It does not release the
	// node's address: call ReleaseAddr.
	DeleteNode(name string) error

	// GetGrants returns what node may host (an empty set if nothing was
	// granted); PutGrants replaces it. The node must exist; its grants go
	// with it when it is deleted.
	GetGrants(node string) (grant.Set, error)
	PutGrants(node string, g grant.Set) error

	// SetWorkloads replaces the node's whole workload list. Each
	// workload's Node is set to node; a workload whose Node names another
	// node is refused. A key owned by another node or an address used by
	// another workload is ErrConflict.
	SetWorkloads(node string, ws []Workload) error
	// ListWorkloads returns all workloads ordered by namespace, name.
	ListWorkloads() ([]Workload, error)

	// PutPolicy creates or replaces a policy; its namespace must exist.
	PutPolicy(Policy) error
	DeletePolicy(namespace, name string) error
	// ListPolicies returns all policies ordered by namespace, name.
	ListPolicies() ([]Policy, error)

	// PutToken creates or replaces a join token.
	PutToken(Token) error
	ListTokens() ([]Token, error)
	RevokeToken(id string) error
	// ConsumeToken checks id's secret hash (constant-time compare), expiry
	// (against now), revocation and uses left, and decrements UsesLeft; it
	// returns the token as it was. An unknown id and a wrong secret both
	// give ErrNotFound, with the same message.
	ConsumeToken(id string, secretHash []byte, now time.Time) (Token, error)
	// CheckToken makes the checks of ConsumeToken without using the token
	// up, so that it works in View: a bad enrollment is refused without a
	// write.
	CheckToken(id string, secretHash []byte, now time.Time) (Token, error)

	// RevokeSerial records a certificate serial (hex, any case, colons
	// allowed) as revoked. Revoking it again keeps the first time.
	RevokeSerial(serial string, at time.Time) error
	IsRevoked(serial string) (bool, error)

	// PutGraceCert records the node's previous certificate (replacing any
	// earlier one); the node must exist. Deleting the node deletes it.
	PutGraceCert(GraceCert) error
	// GetGraceCert returns the node's previous certificate, or
	// ErrNotFound.
	GetGraceCert(node string) (GraceCert, error)
	// DeleteGraceCert forgets the node's previous certificate; none is not
	// an error.
	DeleteGraceCert(node string) error

	// AllocateAddr returns owner's address in pool, allocating the lowest
	// free one the first time (the pool's first two addresses, .0 and .1,
	// are never given out). The same owner always gets the same address.
	// An owner holds one address; if it holds one outside pool, the result
	// is ErrConflict. Pools must not overlap.
	AllocateAddr(owner string, pool netip.Prefix) (netip.Addr, error)
	// ReleaseAddr frees owner's address for reuse.
	ReleaseAddr(owner string) error

	// AppendAudit appends an entry and returns its ID; IDs increase.
	AppendAudit(AuditEntry) (int64, error)
	// ListAudit returns up to limit entries, newest first; limit <= 0
	// means all.
	ListAudit(limit int) ([]AuditEntry, error)
	// PruneAudit deletes the entries older than before and, when
	// maxRows > 0, the oldest beyond maxRows. It returns how many it
	// deleted.
	PruneAudit(before time.Time, maxRows int) (int64, error)

	// PutSpiffeNode creates or replaces the record of a SPIFFE ID.
	PutSpiffeNode(SpiffeNode) error
	// GetSpiffeNode returns the record of a SPIFFE ID, or ErrNotFound.
	GetSpiffeNode(id string) (SpiffeNode, error)
	// ListSpiffeNodes returns every record ordered by SPIFFE ID.
	ListSpiffeNodes() ([]SpiffeNode, error)
	// DeleteSpiffeNode deletes the record of a SPIFFE ID; a missing one is
	// ErrNotFound.
	DeleteSpiffeNode(id string) error

	// SetRoutes replaces the routes node advertises with rs (each one's
	// Node is set to node); the node must exist. Its routes go with it
	// when it is deleted.
	SetRoutes(node string, rs []Route) error
	// ListRoutes returns every route ordered by node, prefix.
	ListRoutes() ([]Route, error)

	// PutSite creates or replaces a site; its namespace must exist. The
	// store checks no CIDR: the state layer validates sites.
	PutSite(Site) error
	// DeleteSite deletes a site; a missing one is ErrNotFound.
	DeleteSite(namespace, name string) error
	// ListSites returns every site ordered by namespace, name.
	ListSites() ([]Site, error)

	// GetMeta returns a value of the key/value table, or ErrNotFound.
	// InsertFlows stores flow records; ListFlows reads them by filter,
	// oldest first; PruneFlows deletes those older than before and, when
	// maxRows > 0, the oldest beyond maxRows. It returns how many it
	// deleted.
	InsertFlows([]Flow) error
	ListFlows(FlowQuery) ([]Flow, error)
	PruneFlows(before time.Time, maxRows int) (int64, error)

	GetMeta(key string) (string, error)
	PutMeta(key, value string) error

	// PutUser creates or replaces a user.
	PutUser(User) error
	GetUser(name string) (User, error)
	ListUsers() ([]User, error)
	// DeleteUser deletes a user and its sessions.
	DeleteUser(name string) error

	// PutSession stores a session; its user must exist.
	PutSession(Session) error
	// GetSession returns the session with that id hash, or ErrNotFound.
	// It does not check expiry.
	GetSession(idHash []byte) (Session, error)
	DeleteSession(idHash []byte) error
	// DeleteExpiredSessions deletes the sessions expired at now and
	// returns how many.
	DeleteExpiredSessions(now time.Time) (int, error)

	// PutAPIToken creates or replaces an API token.
	PutAPIToken(APIToken) error
	GetAPIToken(id string) (APIToken, error)
	ListAPITokens() ([]APIToken, error)
	RevokeAPIToken(id string) error
}
