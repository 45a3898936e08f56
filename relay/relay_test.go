package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/relay"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
)

// Three nodes in namespace prod: a and c may reach b, so a↔b and c↔b are
// peers; a and c are not.
const (
	denyAll = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: prod}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
`
	toB = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-b, namespace: prod}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}, {podSelector: {matchLabels: {app: c}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-a-c, namespace: prod}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [a, c]}]}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: b}}}]}]
`
)

type lab struct {
	t *testing.T
	*coordtest.Coordinator
	nodes map[string]*coordtest.Node
}

// newLab starts a coordinator with nodes a, b and c, each hosting one
// workload labelled app=<name>, and the policies deny-all and to-b.
func newLab(t *testing.T) *lab {
	l := &lab{t: t, Coordinator: coordtest.New(t, coordtest.Options{}), nodes: map[string]*coordtest.Node{}}
	for _, n := range []string{"a", "b", "c"} {
		node := l.MustEnroll(l.Token(1, "namespace=prod,labels=app="+n), "node-"+n)
		l.MustRegister(node, wire.WorkloadDecl{Name: "w-" + n, Namespace: "prod", Labels: map[string]string{"app": n}})
		l.nodes[n] = node
	}
	if _, err := l.Admin().ApplyPolicies(context.Background(), "", "", []byte(denyAll+"---\n"+toB)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	l.wantPeers("a", "b", true)
	l.wantPeers("c", "b", true)
	l.wantPeers("a", "c", false)
	return l
}

// wantPeers checks that nodes x and y hold each other as peers in their
// views (or that neither does).
func (l *lab) wantPeers(x, y string, want bool) {
	l.t.Helper()
	has := func(of, peer string) bool {
		v := l.State.View("node-" + of)
		return v != nil && slices.ContainsFunc(v.Peers, func(p view.Peer) bool { return p.Node == "node-"+peer })
	}
	if has(x, y) != want || has(y, x) != want {
		l.t.Fatalf("views: %s holds %s: %v, %s holds %s: %v; want %v", x, y, has(x, y), y, x, has(y, x), want)
	}
}

func (l *lab) tlsConfig(n string) *tls.Config {
	return l.nodes[n].HTTP.Transport.(*http.Transport).TLSClientConfig
}

func (l *lab) dial(n string) *relay.Client {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := relay.Dial(ctx, l.URL, l.tlsConfig(n), relay.DialOptions{})
	if err != nil {
		l.t.Fatalf("dial as %s: %v", n, err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

// counter reads a relay metric from the coordinator's /metrics.
func (l *lab) counter(series string) float64 {
	l.t.Helper()
	rec := httptest.NewRecorder()
	l.API.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				l.t.Fatal(err)
			}
			return f
		}
	}
	l.t.Fatalf("no series %s in /metrics", series)
	return 0
}

func frames(result string) string { return fmt.Sprintf(`latch_relay_frames_total{result=%q}`, result) }

// waitCounter polls series until it reaches want, for at most 10 s.
func (l *lab) waitCounter(series string, want float64) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := l.counter(series)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			l.t.Fatalf("%s = %v, want %v", series, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recv returns the next packet c receives, failing after 10 s.
func recv(t *testing.T, c *relay.Client) (string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peer, pkt, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return peer, pkt
}

// send sends pkt to peer through c.
func send(t *testing.T, c *relay.Client, peer string, pkt []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Send(ctx, peer, pkt); err != nil {
		t.Fatalf("send to %s: %v", peer, err)
	}
}

// connected waits until the relay holds n connections.
func (l *lab) connected(n float64) { l.t.Helper(); l.waitCounter("latch_relay_connections", n) }

func TestForwardsBetweenPeersBothWays(t *testing.T) {
	l := newLab(t)
	a, b := l.dial("a"), l.dial("b")
	l.connected(2)
	send(t, a, "node-b", []byte("a to b"))
	if peer, pkt := recv(t, b); peer != "node-a" || string(pkt) != "a to b" {
		t.Fatalf("b received %q from %q, want \"a to b\" from node-a", pkt, peer)
	}
	big := bytes.Repeat([]byte{0xee}, relay.MaxPacket)
	send(t, b, "node-a", big)
	if peer, pkt := recv(t, a); peer != "node-b" || !bytes.Equal(pkt, big) {
		t.Fatalf("a received %d bytes from %q, want %d from node-b", len(pkt), peer, len(big))
	}
	l.waitCounter(frames(relay.Forwarded), 2)
	l.waitCounter("latch_relay_bytes_total", float64(len("a to b")+len(big)))
}

// A node crafting frames for a node that is not its peer gets nothing
// through: c receives b's frame first, a's was dropped.
func TestDropsFramesBetweenNonPeers(t *testing.T) {
	l := newLab(t)
	a, b, c := l.dial("a"), l.dial("b"), l.dial("c")
	l.connected(3)
	send(t, a, "node-c", []byte("crafted"))
	l.waitCounter(frames(relay.NotPeers), 1)
	send(t, a, "node-a", []byte("to itself"))
	l.waitCounter(frames(relay.NotPeers), 2)
	send(t, b, "node-c", []byte("from b"))
	if peer, pkt := recv(t, c); peer != "node-b" || string(pkt) != "from b" {
		t.Fatalf("c received %q from %q, want only b's frame", pkt, peer)
	}
	if got := l.counter(frames(relay.Forwarded)); got != 1 {
		t.Fatalf("forwarded %v frames, want 1", got)
	}
}

// When a policy change ends the peering of a and b, the relay stops
// forwarding between them at once; when it comes back, so does the
// forwarding.
func TestPolicyChangeStopsForwarding(t *testing.T) {
	l := newLab(t)
	a, b := l.dial("a"), l.dial("b")
	l.connected(2)
	send(t, a, "node-b", []byte("before"))
	if _, pkt := recv(t, b); string(pkt) != "before" {
		t.Fatalf("b received %q", pkt)
	}
	ctx := context.Background()
	if err := l.Admin().DeletePolicy(ctx, "prod", "to-b"); err != nil {
		t.Fatalf("delete policy: %v", err)
	}
	l.wantPeers("a", "b", false)
	send(t, a, "node-b", []byte("after"))
	send(t, b, "node-a", []byte("after"))
	l.waitCounter(frames(relay.NotPeers), 2)
	if _, err := l.Admin().ApplyPolicies(ctx, "", "", []byte(toB)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	l.wantPeers("a", "b", true)
	send(t, a, "node-b", []byte("again"))
	if _, pkt := recv(t, b); string(pkt) != "again" {
		t.Fatalf("b received %q, want the frame sent after the peering came back (the others were dropped)", pkt)
	}
}

func TestRefusesUnauthenticatedClient(t *testing.T) {
	l := newLab(t)
	cfg := l.tlsConfig("a").Clone()
	cfg.GetClientCertificate = nil
	_, err := relay.Dial(context.Background(), l.URL, cfg, relay.DialOptions{})
	var re *relay.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || !strings.Contains(re.Reason, "certificate") {
		t.Fatalf("dial without a certificate: %v, want 401 saying a certificate is needed", err)
	}
}

// A deleted node's certificate is refused at dial, and its open
// connection ends.
func TestRefusesRevokedCertificate(t *testing.T) {
	l := newLab(t)
	a := l.dial("a")
	l.connected(1)
	if err := l.Admin().DeleteNode(context.Background(), "node-a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := a.Recv(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the open connection of a deleted node: %v, want it closed saying the certificate is revoked", err)
	}
	l.connected(0)
	_, err := relay.Dial(ctx, l.URL, l.tlsConfig("a"), relay.DialOptions{})
	var re *relay.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || !strings.Contains(re.Reason, "revoked") {
		t.Fatalf("dial with a revoked certificate: %v, want 403 saying it is revoked", err)
	}
}

// A message longer than MaxFrame ends the connection with 1009.
func TestRefusesOversizedFrame(t *testing.T) {
	l := newLab(t)
	l.dial("b")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, l.URL+relay.Path, &websocket.DialOptions{HTTPClient: l.nodes["a"].HTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	l.connected(2)
	f := append([]byte{6}, "node-b"...)
	f = append(f, make([]byte, relay.MaxFrame+1-len(f))...)
	ws.Write(ctx, websocket.MessageBinary, f) // may fail as the relay closes
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("after an oversized frame: %v, want the connection closed with 1009", err)
	}
	l.waitCounter(frames(relay.TooLarge), 1)
	// A packet over MaxPacket in a frame within MaxFrame is refused too.
	ws2, _, err := websocket.Dial(ctx, l.URL+relay.Path, &websocket.DialOptions{HTTPClient: l.nodes["a"].HTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.CloseNow()
	f = append([]byte{0}, make([]byte, relay.MaxPacket+1)...)
	ws2.Write(ctx, websocket.MessageBinary, f)
	if _, _, err := ws2.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("after a packet over MaxPacket: %v, want the connection closed with 1009", err)
	}
	l.waitCounter(frames(relay.TooLarge), 2)
	if got := l.counter(frames(relay.Forwarded)); got != 0 {
		t.Fatalf("forwarded %v frames, want none", got)
	}
}

// With the relay off (latch coordinator --relay=false), the node API has
// no relay route and /metrics no relay series.
func TestRelayOff(t *testing.T) {
	c := coordtest.New(t, coordtest.Options{API: func(cfg *api.Config) { cfg.NoRelay = true }})
	n := c.MustEnroll(c.Token(1), "node-a")
	rc, err := relay.Dial(context.Background(), c.URL, n.HTTP.Transport.(*http.Transport).TLSClientConfig, relay.DialOptions{})
	if err == nil {
		rc.Close()
	}
	var re *relay.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("dial with the relay off: %v, want 404", err)
	}
	rec := httptest.NewRecorder()
	c.API.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "latch_relay_") {
		t.Fatalf("/metrics has relay series with the relay off")
	}
}

// A node's second connection replaces its first, which is closed saying
// so; frames for the node reach the new one.
func TestNewerConnectionReplacesOlder(t *testing.T) {
	l := newLab(t)
	old, b := l.dial("a"), l.dial("b")
	l.connected(2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ended := make(chan error, 1)
	go func() { _, _, err := old.Recv(ctx); ended <- err }()
	a := l.dial("a")
	if err := <-ended; websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("the older connection: %v, want it closed saying it was replaced", err)
	}
	l.connected(2)
	send(t, b, "node-a", []byte("to the new one"))
	if peer, pkt := recv(t, a); peer != "node-b" || string(pkt) != "to the new one" {
		t.Fatalf("a received %q from %q", pkt, peer)
	}
}
