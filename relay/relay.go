// Package relay carries WireGuard packets between two nodes that cannot
// reach each other directly, over a WebSocket on the coordinator's HTTPS
// port (Path). Each binary WebSocket message is one frame: a peer's node
// name and one packet (see EncodeFrame). A node sends a frame naming the
// destination; the relay hands it to the destination's connection naming
// the source. The relay never sees plaintext: WireGuard encrypts the
// packets end to end.
//
// The relay is a policy gate: Server forwards a frame from node a to node
// b only while its Gate says that a and b hold each other as peers in
// their current views, checked again on every frame; every other frame is
// dropped and counted. Server does not authenticate: whoever mounts it
// (package coordinator/api, behind the node API's mTLS authentication)
// tells it the node a connection belongs to. Client is the node side.
//
// Only package coordinator/api (which serves it), and tests, import it;
// the node's WireGuard bind is to use Client.
package relay

import (
	"errors"
	"fmt"
)

// Path is the HTTPS path of the relay's WebSocket on the coordinator.
const Path = "/v1/relay"

// Frame limits: a WireGuard packet is at most MaxPacket bytes (a UDP
// payload), a peer's name at most MaxName; a WebSocket message longer
// than MaxFrame is refused and ends the connection.
const (
	MaxPacket = 65535
	MaxName   = 255
	MaxFrame  = 1 + MaxName + MaxPacket
)

// ErrBadFrame is returned for a frame that does not parse, ErrTooLarge
// for one whose packet is longer than MaxPacket.
var (
	ErrBadFrame = errors.New("bad relay frame")
	ErrTooLarge = errors.New("relay frame too large")
)

// EncodeFrame returns the frame carrying packet for (from the client) or
// from (from the relay) the node peer: one byte with the length of peer,
// peer, then the packet. A frame with an empty peer and no packet is a
// keepalive.
func EncodeFrame(peer string, packet []byte) ([]byte, error) {
	if len(peer) > MaxName {
		return nil, fmt.Errorf("%w: peer name of %d bytes, at most %d are allowed", ErrBadFrame, len(peer), MaxName)
	}
	if len(packet) > MaxPacket {
		return nil, fmt.Errorf("%w: packet of %d bytes, at most %d are allowed", ErrTooLarge, len(packet), MaxPacket)
	}
	b := make([]byte, 0, 1+len(peer)+len(packet))
	b = append(b, byte(len(peer)))
	b = append(b, peer...)
	return append(b, packet...), nil
}

// DecodeFrame splits a frame into the peer's name and the packet (which
// aliases b).
func DecodeFrame(b []byte) (peer string, packet []byte, err error) {
	if len(b) == 0 {
		return "", nil, fmt.Errorf("%w: empty", ErrBadFrame)
	}
	n := int(b[0])
	if len(b) < 1+n {
		return "", nil, fmt.Errorf("%w: the header names a peer of %d bytes, the frame has %d", ErrBadFrame, n, len(b)-1)
	}
	if len(b)-1-n > MaxPacket {
		return "", nil, fmt.Errorf("%w: packet of %d bytes, at most %d are allowed", ErrTooLarge, len(b)-1-n, MaxPacket)
	}
	return string(b[1 : 1+n]), b[1+n:], nil
}
