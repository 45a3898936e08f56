package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// DefaultKeepalive is how often a Client sends a keepalive frame when
// DialOptions.Keepalive is zero; the relay ends a connection silent for
// three of them (Config.ReadTimeout).
const DefaultKeepalive = 10 * time.Second

// DialOptions change what Dial does. The zero value takes the defaults.
type DialOptions struct {
	// Keepalive is how often the client sends a keepalive frame.
	Keepalive time.Duration
}

// Client is a node's connection to a relay. Send and Recv may be called
// from different goroutines; Send from several at once.
type Client struct {
	ws     *websocket.Conn
	cancel context.CancelFunc // ends the connection's context
	done   chan struct{}
	once   sync.Once
}

// Dial connects to the relay of the coordinator at coordinatorURL
// (https://HOST:PORT) as the node whose certificate tlsConfig presents.
// ctx bounds the dial only. A refusal is an error with the relay's
// reason (for example a revoked certificate).
func Dial(ctx context.Context, coordinatorURL string, tlsConfig *tls.Config, o DialOptions) (*Client, error) {
	if o.Keepalive <= 0 {
		o.Keepalive = DefaultKeepalive
	}
	u := strings.TrimSuffix(coordinatorURL, "/") + Path
	if !strings.HasPrefix(u, "https://") {
		return nil, fmt.Errorf("relay URL %q: want https://HOST[:PORT]", coordinatorURL)
	}
	if tlsConfig == nil {
		return nil, fmt.Errorf("dialing relay %s: no TLS configuration: pass the node's, which presents its SVID", u)
	}
	// The connection outlives ctx: it runs on a context of its own, which
	// ctx ends only while the dial is under way.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	tc := tlsConfig.Clone()
	tc.NextProtos = []string{"http/1.1"} // a WebSocket needs HTTP/1.1's Upgrade
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	ws, resp, err := websocket.Dial(cctx, u, &websocket.DialOptions{HTTPClient: hc})
	if !stop() || err != nil {
		cancel()
		if err == nil {
			ws.CloseNow()
			return nil, fmt.Errorf("dialing relay %s: %w", u, ctx.Err())
		}
		return nil, fmt.Errorf("dialing relay %s: %w", u, refusal(resp, err))
	}
	ws.SetReadLimit(MaxFrame)
	c := &Client{ws: ws, cancel: cancel, done: make(chan struct{})}
	go c.keepalive(cctx, o.Keepalive)
	return c, nil
}

// refusal is the relay's reason for refusing a handshake, when it gave
// one (the coordinator answers with a wire.Error body).
func refusal(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return err
	}
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if json.Unmarshal(b, &body) == nil && body.Error != "" {
			return &RefusedError{Status: resp.StatusCode, Code: body.Code, Reason: body.Error}
		}
	}
	return &RefusedError{Status: resp.StatusCode, Reason: http.StatusText(resp.StatusCode)}
}

// RefusedError is the relay's refusal of a connection.
type RefusedError struct {
	Status int    // the HTTP status
	Code   string // the coordinator's error code, if it gave one
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused (%d %s): %s", e.Status, e.Code, e.Reason)
}

func (c *Client) keepalive(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	ka := []byte{0}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
			wctx, cancel := context.WithTimeout(ctx, every)
			err := c.ws.Write(wctx, websocket.MessageBinary, ka)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// Send sends packet to the node peer through the relay. The relay drops
// it silently unless peer and this node are peers in their views and
// peer is connected: WireGuard retries as it does over UDP. ctx bounds
// the write; when it ends before the frame is written, the connection
// ends too.
func (c *Client) Send(ctx context.Context, peer string, packet []byte) error {
	if peer == "" {
		return fmt.Errorf("relay send: no peer named")
	}
	f, err := EncodeFrame(peer, packet)
	if err != nil {
		return fmt.Errorf("relay send to %s: %w", peer, err)
	}
	if err := c.ws.Write(ctx, websocket.MessageBinary, f); err != nil {
		return fmt.Errorf("relay send to %s: %w", peer, err)
	}
	return nil
}

// Recv returns the next packet the relay brings and the node it comes
// from. Its error, once the connection has ended, says why (CloseStatus
// and the relay's reason).
func (c *Client) Recv(ctx context.Context) (peer string, packet []byte, err error) {
	for {
		typ, b, err := c.ws.Read(ctx)
		if err != nil {
			return "", nil, fmt.Errorf("relay receive: %w", err)
		}
		if typ != websocket.MessageBinary {
			continue
		}
		peer, packet, err := DecodeFrame(b)
		if err != nil {
			return "", nil, fmt.Errorf("relay receive: %w", err)
		}
		if peer == "" {
			continue // keepalive
		}
		return peer, packet, nil
	}
}

// Close ends the connection.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		close(c.done)
		err = c.ws.Close(websocket.StatusNormalClosure, "")
		c.cancel()
	})
	return err
}
