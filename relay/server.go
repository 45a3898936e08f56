package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Gate says whether the relay may carry packets from node a to node b:
// the coordinator's says yes only while each holds the other as a peer in
// its current view. It is asked on every frame, so it must be cheap.
type Gate interface {
	Peers(a, b string) bool
}

// GateFunc is a Gate in a function.
type GateFunc func(a, b string) bool

// Peers calls f.
func (f GateFunc) Peers(a, b string) bool { return f(a, b) }

// Frame results, the values of the metric's label result.
const (
	Forwarded = "forwarded"  // handed to the destination's connection
	NotPeers  = "not_peers"  // the gate refused: a and b are not each other's peers
	Offline   = "offline"    // the destination has no relay connection
	TooLarge  = "too_large"  // the message was longer than MaxFrame (the connection ends)
	QueueFull = "queue_full" // the destination's queue was full
	Malformed = "malformed"  // not a binary frame that parses (the connection ends)
)

// Config wires a Server. Zero fields take the defaults of DefaultConfig.
type Config struct {
	Gate Gate
	Log  *slog.Logger
	// Queue is how many frames may wait for one connection's writer;
	// more are dropped (QueueFull).
	Queue int
	// ReadTimeout ends a connection that sends nothing (not even a
	// keepalive frame) for this long, with status 1008 and a reason.
	ReadTimeout time.Duration
	// WriteTimeout ends a connection that takes no frame for this long.
	WriteTimeout time.Duration
	// CheckInterval is how often an open connection's credential is
	// checked again (Serve's check).
	CheckInterval time.Duration
}

// DefaultConfig holds the defaults of a zero Config field.
var DefaultConfig = Config{
	Queue:         256,
	ReadTimeout:   3 * DefaultKeepalive,
	WriteTimeout:  10 * time.Second,
	CheckInterval: 10 * time.Second,
}

// Server relays frames between the connections of nodes. It is an
// http.Handler only through Serve, which its mounter calls with the
// authenticated node's name.
type Server struct {
	cfg Config

	mu    sync.Mutex
	conns map[string]*conn // by node; guarded by mu

	frames      *prometheus.CounterVec
	bytes       prometheus.Counter
	connections prometheus.Gauge
}

// NewServer returns a relay with no connections. cfg.Gate is required.
func NewServer(cfg Config) *Server {
	d := DefaultConfig
	if cfg.Queue <= 0 {
		cfg.Queue = d.Queue
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = d.ReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = d.WriteTimeout
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = d.CheckInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Gate == nil {
		panic("relay: NewServer without a Gate")
	}
	s := &Server{cfg: cfg, conns: map[string]*conn{},
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_relay_frames_total",
			Help: "Frames nodes sent to the relay, by result: forwarded, not_peers (the two nodes are not peers in their views), offline (the destination has no relay connection), too_large, queue_full, malformed.",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "latch_relay_bytes_total",
			Help: "Bytes of WireGuard packets the relay forwarded.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "latch_relay_connections",
			Help: "Open relay connections of nodes.",
		}),
	}
	for _, r := range []string{Forwarded, NotPeers, Offline, TooLarge, QueueFull, Malformed} {
		s.frames.WithLabelValues(r)
	}
	return s
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	s.frames.Describe(ch)
	s.bytes.Describe(ch)
	s.connections.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	s.frames.Collect(ch)
	s.bytes.Collect(ch)
	s.connections.Collect(ch)
}

// conn is one node's relay connection.
type conn struct {
	node string
	ws   *websocket.Conn
	out  chan []byte // frames for the node, bounded (Config.Queue)
	done chan struct{}
	once sync.Once
	why  string // the close reason; set before done closes
	code websocket.StatusCode
}

func (c *conn) close(code websocket.StatusCode, why string) {
	c.once.Do(func() {
		c.code, c.why = code, why
		close(c.done)
	})
}

// Serve upgrades the request of node (already authenticated by the
// caller) to a relay connection and relays its frames until it ends: the
// client goes, sends a bad or too large frame, stays silent past
// ReadTimeout, takes no frame for WriteTimeout, a newer connection of the
// same node replaces it, or check (called every CheckInterval) says the
// node's credential no longer holds. It returns when the connection has
// ended.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, node string, check func(context.Context) error) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{})
	if err != nil {
		s.cfg.Log.Info("relay: websocket handshake failed", "node", node, "err", err)
		return
	}
	ws.SetReadLimit(MaxFrame)
	c := &conn{node: node, ws: ws, out: make(chan []byte, s.cfg.Queue), done: make(chan struct{})}
	s.mu.Lock()
	old := s.conns[node]
	s.conns[node] = c
	s.mu.Unlock()
	if old != nil {
		old.close(websocket.StatusPolicyViolation, "replaced by a newer relay connection of the same node")
	}
	s.connections.Inc()
	s.cfg.Log.Debug("relay: connected", "node", node)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.read(ctx, c) }()
	go func() { defer wg.Done(); s.write(ctx, c) }()
	go func() { defer wg.Done(); s.recheck(ctx, c, check) }()
	<-c.done
	s.mu.Lock()
	if s.conns[node] == c {
		delete(s.conns, node)
	}
	s.mu.Unlock()
	s.connections.Dec()
	_ = ws.Close(c.code, c.why) // bounded by the library (5 s for each direction)
	cancel()
	wg.Wait()
	s.cfg.Log.Debug("relay: disconnected", "node", node, "why", c.why)
}

// read takes c's frames and forwards them. A watchdog ends c when no
// frame comes for ReadTimeout, with a close frame saying so.
func (s *Server) read(ctx context.Context, c *conn) {
	silent := time.AfterFunc(s.cfg.ReadTimeout, func() {
		c.close(websocket.StatusPolicyViolation, fmt.Sprintf("nothing received for %s: send a keepalive frame more often", s.cfg.ReadTimeout))
	})
	defer silent.Stop()
	for {
		typ, b, err := c.ws.Read(ctx)
		switch {
		case errors.Is(err, websocket.ErrMessageTooBig):
			s.frames.WithLabelValues(TooLarge).Inc()
			c.close(websocket.StatusMessageTooBig, fmt.Sprintf("a frame is longer than %d bytes", MaxFrame))
			return
		case err != nil:
			c.close(websocket.StatusGoingAway, "connection closed")
			return
		}
		silent.Reset(s.cfg.ReadTimeout)
		if typ != websocket.MessageBinary {
			s.frames.WithLabelValues(Malformed).Inc()
			c.close(websocket.StatusUnsupportedData, "relay frames are binary messages")
			return
		}
		peer, packet, err := DecodeFrame(b)
		if errors.Is(err, ErrTooLarge) {
			s.frames.WithLabelValues(TooLarge).Inc()
			c.close(websocket.StatusMessageTooBig, err.Error())
			return
		}
		if err != nil {
			s.frames.WithLabelValues(Malformed).Inc()
			c.close(websocket.StatusProtocolError, err.Error())
			return
		}
		if peer == "" && len(packet) == 0 {
			continue // keepalive
		}
		s.forward(c.node, peer, packet)
	}
}

// forward hands packet from node src to node dst's connection, if the
// gate lets it.
func (s *Server) forward(src, dst string, packet []byte) {
	if !s.cfg.Gate.Peers(src, dst) {
		s.frames.WithLabelValues(NotPeers).Inc()
		return
	}
	s.mu.Lock()
	d := s.conns[dst]
	s.mu.Unlock()
	if d == nil {
		s.frames.WithLabelValues(Offline).Inc()
		return
	}
	f, err := EncodeFrame(src, packet)
	if err != nil { // cannot happen: DecodeFrame bounded both
		s.frames.WithLabelValues(Malformed).Inc()
		return
	}
	select {
	case d.out <- f:
		s.frames.WithLabelValues(Forwarded).Inc()
		s.bytes.Add(float64(len(packet)))
	default:
		s.frames.WithLabelValues(QueueFull).Inc()
	}
}

// write sends c the frames queued for it.
func (s *Server) write(ctx context.Context, c *conn) {
	for {
		select {
		case <-c.done:
			return
		case <-ctx.Done():
			return
		case f := <-c.out:
			wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			err := c.ws.Write(wctx, websocket.MessageBinary, f)
			cancel()
			if err != nil {
				c.close(websocket.StatusGoingAway, fmt.Sprintf("writing a frame: %v", err))
				return
			}
		}
	}
}

// recheck calls check every CheckInterval and ends c when it fails.
func (s *Server) recheck(ctx context.Context, c *conn, check func(context.Context) error) {
	if check == nil {
		return
	}
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if err := check(ctx); err != nil {
				s.cfg.Log.Info("relay: connection ended: the node's credential no longer authorizes it", "node", c.node, "err", err)
				c.close(websocket.StatusPolicyViolation, truncate(err.Error(), 120))
				return
			}
		}
	}
}

// truncate keeps a close reason within the 123 bytes a close frame holds.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
