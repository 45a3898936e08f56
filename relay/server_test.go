package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// A frame for a node whose queue is full is dropped and counted; the
// queued frames stay.
func TestQueueFullDrops(t *testing.T) {
	s := NewServer(Config{Gate: GateFunc(func(a, b string) bool { return true }), Queue: 2})
	dst := &conn{node: "node-b", out: make(chan []byte, 2), done: make(chan struct{})}
	s.conns["node-b"] = dst // no writer: nothing leaves the queue
	for i := 0; i < 3; i++ {
		s.forward("node-a", "node-b", []byte{byte(i)})
	}
	if got := value(t, s, "latch_relay_frames_total", QueueFull); got != 1 {
		t.Fatalf("queue_full = %v, want 1", got)
	}
	if got := value(t, s, "latch_relay_frames_total", Forwarded); got != 2 || len(dst.out) != 2 {
		t.Fatalf("forwarded = %v, queued %d; want 2 and 2", got, len(dst.out))
	}
	if p, pkt, _ := DecodeFrame(<-dst.out); p != "node-a" || pkt[0] != 0 {
		t.Fatalf("first queued frame: from %q packet %v", p, pkt)
	}
}

// A connection that sends nothing, not even keepalives, ends after
// ReadTimeout, and the relay says why.
func TestSilentConnectionEnds(t *testing.T) {
	s := NewServer(Config{Gate: GateFunc(func(a, b string) bool { return true }), ReadTimeout: 100 * time.Millisecond})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Serve(w, r, r.URL.Query().Get("node"), nil)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, srv.URL+"?node=node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_, _, err = ws.Read(ctx)
	if ctx.Err() != nil || websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "nothing received") {
		t.Fatalf("a silent connection: %v, want it ended by the relay saying nothing was received", err)
	}
	for deadline := time.Now().Add(10 * time.Second); value(t, s, "latch_relay_connections", "") != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay still counts the silent connection")
		}
	}
}

// value reads one series of s's metrics: name, with the label result
// unless result is empty.
func value(t *testing.T, s *Server, name, result string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != result) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s %s", name, result)
	return 0
}
