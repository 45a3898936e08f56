package stun

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/pion/stun/v3"
)

func bindingRequest(t *testing.T) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestServeAnswersWithTheSourceAddress sends a binding request over
// loopback and reads the mapped address back.
func TestServeAnswersWithTheSourceAddress(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Not STUN: ignored.
	if _, err := c.WriteTo([]byte("hello, this is not a STUN message"), srv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	req := bindingRequest(t)
	if _, err := c.WriteTo(req.Raw, srv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		t.Fatal(err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("response %v %x, want a binding success for %x", res.Type, res.TransactionID, req.TransactionID)
	}
	if err := stun.Fingerprint.Check(res); err != nil {
		t.Errorf("fingerprint: %v", err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res); err != nil {
		t.Fatal(err)
	}
	want := c.LocalAddr().(*net.UDPAddr)
	if !xor.IP.Equal(want.IP) || xor.Port != want.Port {
		t.Errorf("mapped address %s, want %s", xor.String(), want)
	}
}

func TestAnswerIgnoresAllButBindingRequests(t *testing.T) {
	s := newServer(nil)
	src := netip.MustParseAddrPort("198.18.0.7:40000")
	ind, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	if err != nil {
		t.Fatal(err)
	}
	succ, err := stun.Build(stun.TransactionID, stun.BindingSuccess)
	if err != nil {
		t.Fatal(err)
	}
	wgInit := make([]byte, 148)
	wgInit[0] = 1
	for name, in := range map[string][]byte{
		"empty":              nil,
		"WireGuard":          wgInit,
		"indication":         ind.Raw,
		"binding success":    succ.Raw,
		"truncated":          bindingRequest(t).Raw[:19],
		"bad attribute size": append(append([]byte{}, bindingRequest(t).Raw[:3]...), 0xff),
	} {
		if out := s.answer(in, src); out != nil {
			t.Errorf("%s: answered %x", name, out)
		}
	}
}

func TestAnswerRateLimitsEachSource(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newServer(ratelimit.New(1, 2, 10, func() time.Time { return now }))
	a := netip.MustParseAddrPort("198.18.0.7:40000")
	b := netip.MustParseAddrPort("198.18.0.8:40000")
	req := bindingRequest(t).Raw
	for i := range 2 {
		if s.answer(req, a) == nil {
			t.Fatalf("request %d of the burst not answered", i)
		}
	}
	if s.answer(req, netip.AddrPortFrom(a.Addr(), 1)) != nil {
		t.Error("third request from the same address (another port) answered")
	}
	if s.answer(req, b) == nil {
		t.Error("another source not answered")
	}
	now = now.Add(time.Second)
	if s.answer(req, a) == nil {
		t.Error("not answered after the bucket refilled")
	}
}

// FuzzAnswer: any packet gets no answer or a binding success for its own
// transaction, never a panic.
func FuzzAnswer(f *testing.F) {
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	f.Add(req.Raw)
	f.Add([]byte{1, 0, 0, 0})
	f.Add(make([]byte, 148))
	s := newServer(ratelimit.New(1e9, 1e9, 10, nil))
	src := netip.MustParseAddrPort("198.18.0.7:40000")
	f.Fuzz(func(t *testing.T, in []byte) {
		out := s.answer(append([]byte(nil), in...), src)
		if out == nil {
			return
		}
		res := &stun.Message{Raw: append([]byte(nil), out...)}
		if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
			t.Fatalf("answer %x to %x: %v", out, in, err)
		}
		if string(res.TransactionID[:]) != string(in[8:20]) {
			t.Fatalf("answer for transaction %x to %x", res.TransactionID, in)
		}
	})
}
