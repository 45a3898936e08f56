// Package stun answers STUN binding requests (RFC 8489) on UDP, so that a
// node behind NAT learns the address and port its WireGuard socket has on
// the far side of the NAT (its reflexive endpoint). It answers only
// binding requests, with XOR-MAPPED-ADDRESS and FINGERPRINT; anything
// else is ignored. Each packet costs one decode and one response, and
// each source address gets a bounded rate of answers. The packet format
// is github.com/pion/stun/v3's.
//
// Only package coordinator imports it.
package stun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/pion/stun/v3"
)

// DefaultPort is the STUN port (RFC 8489).
const DefaultPort = 3478

// Rate bounds per source address: Burst answers at once, then Rate per
// second; at most Sources addresses are tracked.
const (
	Rate    = 5
	Burst   = 10
	Sources = 4096
)

// maxPacket is the largest request read; a binding request is 20 bytes
// plus a few attributes.
const maxPacket = 1500

// Serve answers binding requests on conn until ctx ends or conn fails;
// it closes conn when ctx ends and then returns nil.
func Serve(ctx context.Context, conn *net.UDPConn, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s := newServer(nil)
	buf := make([]byte, maxPacket)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading STUN requests: %w", err)
		}
		out := s.answer(buf[:n], src)
		if out == nil {
			continue
		}
		if _, err := conn.WriteToUDPAddrPort(out, src); err != nil {
			log.Debug("answering a STUN binding request", "src", src.String(), "err", err)
		}
	}
}

// server holds what answer reuses from packet to packet; it is not safe
// for concurrent use.
type server struct {
	limit    *ratelimit.Limiter
	req, res stun.Message
}

func newServer(l *ratelimit.Limiter) *server {
	if l == nil {
		l = ratelimit.New(Rate, Burst, Sources, nil)
	}
	return &server{limit: l}
}

// answer returns the response to the packet in from src, or nil when
// there is none to send: not a STUN binding request, or src is over its
// rate. The response is valid until the next call.
func (s *server) answer(in []byte, src netip.AddrPort) []byte {
	if !stun.IsMessage(in) {
		return nil
	}
	s.req.Raw = in
	if err := s.req.Decode(); err != nil || s.req.Type != stun.BindingRequest {
		return nil
	}
	if ok, _ := s.limit.Allow(sourceOf(src.Addr())); !ok {
		return nil
	}
	ip := src.Addr().Unmap()
	s.res.Reset()
	s.res.TransactionID = s.req.TransactionID
	s.res.SetType(stun.BindingSuccess)
	s.res.WriteHeader()
	xor := stun.XORMappedAddress{IP: ip.AsSlice(), Port: int(src.Port())}
	if err := xor.AddTo(&s.res); err != nil {
		return nil
	}
	if err := stun.Fingerprint.AddTo(&s.res); err != nil {
		return nil
	}
	return s.res.Raw
}

// sourceOf is the rate-limit key of addr: the IPv4 address, or the /64 of
// an IPv6 one (as ratelimit.Source).
func sourceOf(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	if addr.Is4() {
		return netip.PrefixFrom(addr, 32)
	}
	p, _ := addr.Prefix(64)
	return p
}
