package wg

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
	"golang.zx2c4.com/wireguard/conn"
)

// ErrNoReflexive is wrapped by the error Reflexive returns when the
// device cannot ask (kernel WireGuard owns its socket) or no answer came.
var ErrNoReflexive = errors.New("no reflexive endpoint")

// Reflector is a Device that can learn its reflexive endpoint: the
// address and port its WireGuard socket has on the far side of NAT, as a
// STUN server sees it. The wireguard-go device is one; kernel WireGuard
// owns its socket, so it is not.
type Reflector interface {
	// Reflexive sends a STUN binding request to server from the WireGuard
	// socket and returns the mapped address of the answer. It retries a
	// few times and gives up (ErrNoReflexive) when ctx ends or no answer
	// comes within a few seconds.
	Reflexive(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error)
}

// stunTries is how many binding requests Reflexive sends, stunWait apart.
const (
	stunTries = 3
	stunWait  = 700 * time.Millisecond
)

// stunBind wraps wireguard-go's socket (a conn.Bind): it lets Reflexive
// send STUN binding requests from the WireGuard socket, and takes the
// STUN answers out of the receive path before wireguard-go sees them.
//
// A packet is taken as a STUN answer when it has the STUN magic cookie
// (pion's IsMessage) and a binding response type (0x0101 success, 0x0111
// error): its second byte is then nonzero, while every WireGuard message
// starts with a type byte and three zero bytes, so no WireGuard packet is
// taken. Answers that match no pending request are dropped.
type stunBind struct {
	conn.Bind

	mu      sync.Mutex
	pending map[[stun.TransactionIDSize]byte]chan netip.AddrPort // guarded by mu
}

func newSTUNBind(b conn.Bind) *stunBind {
	return &stunBind{Bind: b, pending: map[[stun.TransactionIDSize]byte]chan netip.AddrPort{}}
}

// isSTUNAnswer reports whether b is a STUN binding response (see
// stunBind).
func isSTUNAnswer(b []byte) bool {
	return stun.IsMessage(b) && b[0] == 0x01 && (b[1] == 0x01 || b[1] == 0x11)
}

// Open implements conn.Bind: each receive function is wrapped by demux.
func (b *stunBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	out := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		out[i] = b.demux(fn)
	}
	return out, actual, nil
}

// demux returns fn with the STUN answers taken out of what it receives:
// they go to the waiting Reflexive call, the other packets are passed on
// in order. A batch of only STUN answers is not passed on: fn is called
// again.
func (b *stunBind) demux(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n, err := fn(packets, sizes, eps)
			kept := 0
			for i := range n {
				p := packets[i][:sizes[i]]
				if isSTUNAnswer(p) {
					b.deliver(p)
					continue
				}
				if kept != i {
					// Swap, so that every slot keeps a buffer of its own.
					packets[kept], packets[i] = packets[i], packets[kept]
					sizes[kept], eps[kept] = sizes[i], eps[i]
				}
				kept++
			}
			if kept > 0 || n == 0 || err != nil {
				return kept, err
			}
		}
	}
}

// deliver hands a STUN answer to the Reflexive call waiting for it.
func (b *stunBind) deliver(p []byte) {
	if len(p) < 20 {
		return
	}
	var id [stun.TransactionIDSize]byte
	copy(id[:], p[8:20])
	b.mu.Lock()
	ch, ok := b.pending[id]
	b.mu.Unlock()
	if !ok {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
		return
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err != nil {
		return
	}
	ip, ok := netip.AddrFromSlice(xor.IP)
	if !ok || xor.Port <= 0 || xor.Port > 65535 {
		return
	}
	select {
	case ch <- netip.AddrPortFrom(ip.Unmap(), uint16(xor.Port)):
	default: // an answer is already waiting
	}
}

// Reflexive implements Reflector.
func (b *stunBind) Reflexive(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	if !server.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("%w: invalid STUN server %s", ErrNoReflexive, server)
	}
	ep, err := b.ParseEndpoint(server.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: STUN server %s: %v", ErrNoReflexive, server, err)
	}
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("building a STUN request: %w", err)
	}
	ch := make(chan netip.AddrPort, 1)
	b.mu.Lock()
	b.pending[req.TransactionID] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, req.TransactionID)
		b.mu.Unlock()
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	var sendErr error
	for try := 0; ; try++ {
		select {
		case ap := <-ch:
			return ap, nil
		case <-ctx.Done():
			return netip.AddrPort{}, fmt.Errorf("%w: asking %s: %v", ErrNoReflexive, server, ctx.Err())
		case <-t.C:
		}
		if try == stunTries {
			if sendErr != nil {
				return netip.AddrPort{}, fmt.Errorf("%w: sending to %s: %v", ErrNoReflexive, server, sendErr)
			}
			return netip.AddrPort{}, fmt.Errorf("%w: %s did not answer %d requests", ErrNoReflexive, server, stunTries)
		}
		if err := b.Send([][]byte{req.Raw}, ep); err != nil {
			sendErr = err
		}
		t.Reset(stunWait)
	}
}
