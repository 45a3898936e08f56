package wg

import (
	"errors"

	"golang.zx2c4.com/wireguard/tun"
)

// PacketFilter decides which packets cross between the TUN device and
// wireguard-go. Both methods are called concurrently, on the data path:
// they must be fast and must not block. pkt starts with the IP header and
// must not be kept or changed.
type PacketFilter interface {
	// Outbound reports whether a packet the kernel sends into the tunnel
	// may go.
	Outbound(pkt []byte) bool
	// Inbound reports whether a packet out of the tunnel may reach the
	// kernel.
	Inbound(pkt []byte) bool
}

// ErrFilterNeedsUserspace is wrapped by the error Open returns when a
// PacketFilter is configured but the kernel implementation was chosen: a
// packet filter can only sit in wireguard-go's path.
var ErrFilterNeedsUserspace = errors.New("a userspace packet filter needs wireguard-go, but kernel WireGuard is in use")

// filterTUN wraps the TUN device wireguard-go reads and writes, dropping
// the packets the filter refuses.
type filterTUN struct {
	tun.Device
	f PacketFilter
}

var _ tun.Device = (*filterTUN)(nil)

// Read reads packets from the kernel and keeps those the filter lets go
// into the tunnel, moved to the front of bufs. It never returns an empty
// batch because everything was dropped: it reads again instead.
func (t *filterTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := t.Device.Read(bufs, sizes, offset)
		w := 0
		for i := 0; i < n; i++ {
			end := offset + sizes[i]
			if sizes[i] <= 0 || end > len(bufs[i]) || !t.f.Outbound(bufs[i][offset:end]) {
				continue
			}
			if w != i {
				// The buffers belong to the caller's elements: move the
				// bytes, not the slices.
				copy(bufs[w][offset:], bufs[i][offset:end])
				sizes[w] = sizes[i]
			}
			w++
		}
		if w > 0 || n == 0 || err != nil {
			return w, err
		}
	}
}

// Write hands the kernel the packets the filter lets out of the tunnel.
// Dropped packets count as written. bufs itself is not changed.
func (t *filterTUN) Write(bufs [][]byte, offset int) (int, error) {
	var kept [][]byte // nil until the first drop
	for i, b := range bufs {
		ok := offset >= 0 && len(b) > offset && t.f.Inbound(b[offset:])
		switch {
		case ok && kept != nil:
			kept = append(kept, b)
		case !ok && kept == nil:
			kept = make([][]byte, i, len(bufs))
			copy(kept, bufs[:i])
		}
	}
	if kept == nil {
		return t.Device.Write(bufs, offset)
	}
	dropped := len(bufs) - len(kept)
	if len(kept) == 0 {
		return dropped, nil
	}
	n, err := t.Device.Write(kept, offset)
	return n + dropped, err
}
