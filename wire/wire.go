// Package wire defines the JSON messages between a node agent and the
// coordinator's node API. It is the only coordinator-side package the node
// imports (with the view and inventory types it carries). Pure data.
// Anything may import it.
package wire

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// Node API paths. Every call but Enroll is made over mTLS with the node's
// SVID; the coordinator takes the node's identity from that certificate
// only, never from a request body.
const (
	PathEnroll   = "/v1/node/enroll"
	PathRenew    = "/v1/node/renew"
	PathRegister = "/v1/node/register"
	// PathStream is a GET that streams newline-delimited StreamMessage
	// JSON; the query parameter "have" is the view version the node holds.
	PathStream = "/v1/node/stream"
	// SpiffeALPN is the TLS application protocol a node offers when its
	// SVID comes from SPIRE: the coordinator then presents its SPIRE SVID
	// instead of its embedded CA's.
	SpiffeALPN = "latch-spiffe"
)

// EnrollRequest trades a join token and a CSR for a first SVID.
type EnrollRequest struct {
	Token string `json:"token"`
	// Name is the node name the agent asks for; the SPIFFE ID becomes
	// spiffe://<td>/latch/node/<name>.
	Name string `json:"name"`
	// Labels, if set, are the labels the node expects. A node's labels
	// are exactly its join token's: the coordinator refuses (403,
	// not_granted) labels that differ.
	Labels map[string]string `json:"labels,omitempty"`
	CSR    []byte            `json:"csr"` // DER
	// Routes are the routes the node will advertise when it registers.
	// The coordinator checks them before it enrolls the node (400
	// invalid, 409 conflict), so a node whose routes would be refused is
	// not enrolled and its token is not used up.
	Routes []Route `json:"routes,omitempty"`
}

// SVIDResponse carries a signed SVID, the trust bundle and what the
// coordinator knows of the node.
type SVIDResponse struct {
	Chain     [][]byte  `json:"chain"`  // DER, leaf first
	Bundle    [][]byte  `json:"bundle"` // DER CA certificates
	ExpiresAt time.Time `json:"expiresAt"`
	Node      NodeInfo  `json:"node"`
}

// RenewRequest asks for a new SVID; it must come over mTLS with the
// current one.
type RenewRequest struct {
	CSR []byte `json:"csr"` // DER
}

// NodeInfo is the coordinator's record of a node as the node may see it.
type NodeInfo struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	IP        netip.Addr        `json:"ip"`
	Route     netip.Prefix      `json:"route"` // the overlay, routed into the WireGuard device
}

// RegisterRequest tells the coordinator how to reach the node and what
// runs on it. It replaces everything registered before. Every workload
// must be granted to the node (namespace, exact labels, name pattern), or
// the whole request is refused (403, not_granted); a public key another
// node registered is refused (409).
type RegisterRequest struct {
	PublicKey string           `json:"publicKey"` // WireGuard, base64
	Endpoints []netip.AddrPort `json:"endpoints"` // underlay
	Ports     []inventory.Port `json:"ports,omitempty"`
	Workloads []WorkloadDecl   `json:"workloads,omitempty"`
	// Routes are the subnets the node advertises as a gateway (at most
	// MaxRoutes; see CheckRoutes). They replace those advertised before:
	// a route left out is withdrawn. An invalid route, or one overlapping
	// a different route of another node, refuses the whole request (400,
	// 409) and changes nothing.
	Routes []Route `json:"routes,omitempty"`
}

// WorkloadDecl declares a workload; the coordinator assigns its address.
type WorkloadDecl struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []inventory.Port  `json:"ports,omitempty"`
	// SpiffeID is the workload's SPIFFE ID from SPIRE, for a node whose
	// own SVID is from SPIRE (the agent checks that its SPIRE agent issues
	// it that ID). The coordinator sets the label policy.SpiffeIDLabel
	// from it.
	SpiffeID string `json:"spiffeID,omitempty"`
}

// RegisterResponse gives the addresses the coordinator assigned.
type RegisterResponse struct {
	Node      NodeInfo             `json:"node"`
	Workloads []inventory.Workload `json:"workloads,omitempty"`
	// Routes are the node's advertised routes with their status at the
	// time of the registration.
	Routes []RouteStatus `json:"routes,omitempty"`
	// STUNPort is the UDP port of the coordinator's STUN server, on the
	// host the node reaches the coordinator at; 0 when it has none. The
	// node asks it for its reflexive endpoint (docs/nat.md).
	STUNPort int `json:"stunPort,omitempty"`
}

// StreamMessage is one line of the view stream: a full view, a delta from
// the version the node holds, a keepalive, or the last line, End, when the
// coordinator ends the stream (the node was deleted, or the certificate
// the stream was opened with expired or was replaced).
type StreamMessage struct {
	Full      *view.View  `json:"full,omitempty"`
	Delta     *view.Delta `json:"delta,omitempty"`
	Keepalive bool        `json:"keepalive,omitempty"`
	End       *Error      `json:"end,omitempty"`
}

// Error is the body of every non-2xx answer: what went wrong and what to
// do about it.
type Error struct {
	Error string `json:"error"`
	// Code is a stable machine-readable reason, such as "token_used".
	Code string `json:"code,omitempty"`
}

// CheckNodeName reports whether name can be a node name: a DNS-1123 label
// (1 to 63 characters of a-z, 0-9 and '-', starting and ending with a
// letter or digit). The node checks it before enrolling and the
// coordinator again before signing.
func CheckNodeName(name string) error {
	if name == "" {
		return fmt.Errorf("empty node name")
	}
	if len(name) > 63 {
		return fmt.Errorf("node name %q is %d characters long, at most 63 are allowed", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch == '-' && i != 0 && i != len(name)-1:
		default:
			return fmt.Errorf("invalid node name %q: use lowercase letters, digits and '-', starting and ending with a letter or digit", name)
		}
	}
	return nil
}

// PathFlows is a POST of a FlowBatch: the flow records the node's
// enforcer saw. The coordinator accepts only records whose local side is a
// workload of the calling node.
const PathFlows = "/v1/node/flows"

// MaxFlowBatch is the most records one FlowBatch may carry; the
// coordinator refuses a larger batch as a whole.
const MaxFlowBatch = 10000

// Flow verdicts.
const (
	VerdictAllowed   = "allowed"
	VerdictDenied    = "denied"
	VerdictWouldDeny = "would-deny" // passed: the namespace is in monitor mode
)

// Flow directions, as seen from the local workload.
const (
	DirIngress = "ingress" // the remote end sent the packet
	DirEgress  = "egress"  // the local workload sent it
)

// FlowRecord aggregates the enforcer's events of one flow in one interval:
// the same direction, local workload, addresses, protocol, destination
// port, verdict and reason. Packets counts the packets that produced an
// event: the first packet of each connection, allowed or would-deny, and
// every denied packet. Later packets of tracked connections (a would-deny
// connection is tracked like an allowed one) produce none and are not
// counted. Bytes are those packets' lengths (IP packet; the eBPF
// enforcer's skb length).
type FlowRecord struct {
	Start     time.Time  `json:"start"` // first event of the interval
	End       time.Time  `json:"end"`   // last event
	Direction string     `json:"direction"`
	Workload  string     `json:"workload"` // the local workload, namespace/name
	Src       netip.Addr `json:"src"`
	Dst       netip.Addr `json:"dst"`
	Protocol  string     `json:"protocol"` // TCP, UDP, SCTP, ICMP or the IP protocol number
	Port      uint16     `json:"port"`     // destination port; 0 without ports
	Verdict   string     `json:"verdict"`
	Reason    string     `json:"reason,omitempty"`
	Packets   uint64     `json:"packets"`
	Bytes     uint64     `json:"bytes"`
}

// Bounds of a FlowRecord's strings.
const (
	// MaxFlowReason bounds Reason: an enforcer's reason name such as
	// "policy" or "reason(23)".
	MaxFlowReason = 64
	// MaxFlowWorkload bounds Workload: a namespace (a DNS label, 63), '/'
	// and a workload name (a DNS subdomain, 253).
	MaxFlowWorkload = 63 + 1 + 253
)

// Check reports whether r is well formed, without knowing the node or the
// coordinator's clock: a known direction and verdict, a protocol name
// (TCP, UDP, SCTP, ICMP) or another IP protocol number, a reason of at
// most MaxFlowReason characters of a-z, 0-9, '-', '(' and ')', a workload
// name of at most MaxFlowWorkload bytes, IPv4 addresses at both ends and
// a time interval. Its errors quote at most a short prefix of a bad
// value.
func (r *FlowRecord) Check() error {
	switch r.Direction {
	case DirIngress, DirEgress:
	default:
		return fmt.Errorf("direction %.32q is not ingress or egress", r.Direction)
	}
	switch r.Verdict {
	case VerdictAllowed, VerdictDenied, VerdictWouldDeny:
	default:
		return fmt.Errorf("verdict %.32q is not allowed, denied or would-deny", r.Verdict)
	}
	if !ValidFlowProtocol(r.Protocol) {
		return fmt.Errorf("protocol %.32q is not TCP, UDP, SCTP, ICMP or another IP protocol number (0 to 255)", r.Protocol)
	}
	if len(r.Reason) > MaxFlowReason {
		return fmt.Errorf("reason %.32q… is %d bytes long, at most %d are allowed", r.Reason, len(r.Reason), MaxFlowReason)
	}
	for i := 0; i < len(r.Reason); i++ {
		if ch := r.Reason[i]; !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '(' || ch == ')') {
			return fmt.Errorf("reason %.32q: only a-z, 0-9, '-', '(' and ')' are allowed", r.Reason)
		}
	}
	if len(r.Workload) > MaxFlowWorkload {
		return fmt.Errorf("workload %.32q… is %d bytes long, at most %d are allowed", r.Workload, len(r.Workload), MaxFlowWorkload)
	}
	if !r.Src.Is4() || !r.Dst.Is4() {
		return fmt.Errorf("flow %s -> %s: both addresses must be IPv4 (the overlay is IPv4)", r.Src, r.Dst)
	}
	if r.Start.IsZero() || r.End.Before(r.Start) {
		return fmt.Errorf("flow times %s..%s are not an interval", r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339))
	}
	return nil
}

// ValidFlowProtocol reports whether p names a protocol as flow records
// do: TCP, UDP, SCTP, ICMP, or the decimal number (no sign, no leading
// zero) of another IP protocol.
func ValidFlowProtocol(p string) bool {
	switch p {
	case "TCP", "UDP", "SCTP", "ICMP":
		return true
	case "1", "6", "17", "132": // named above
		return false
	}
	n, err := strconv.ParseUint(p, 10, 8)
	return err == nil && strconv.FormatUint(n, 10) == p
}

// FlowBatch is what a node uploads. Dropped counts records the node
// discarded (oldest first) because its buffer was full while the
// coordinator was away.
type FlowBatch struct {
	Records []FlowRecord `json:"records"`
	Dropped uint64       `json:"dropped,omitempty"`
}

// FlowBatchResponse says how many records were stored; Rejected records
// named a local side that is not a workload of the node.
type FlowBatchResponse struct {
	Accepted int    `json:"accepted"`
	Rejected int    `json:"rejected,omitempty"`
	Message  string `json:"message,omitempty"`
}
