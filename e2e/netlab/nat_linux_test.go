package netlab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func udpListen(t *testing.T, h *Host, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := h.Do(func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	}); err != nil {
		t.Fatalf("%s: listen udp %s: %v", h.Name, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFrom reads one datagram within d, or returns os.ErrDeadlineExceeded.
func readFrom(c *net.UDPConn, d time.Duration) (string, netip.AddrPort, error) {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	return string(buf[:n]), from, err
}

// A NAT's LAN host reaches the underlay from the router's WAN address and
// its own port; replies come back, unsolicited packets do not, and the
// underlay cannot reach the LAN.
func TestNATMasqueradesAndDropsUnsolicited(t *testing.T) {
	lab := New(t)
	nat := lab.NAT("nat", netip.MustParsePrefix("198.19.10.0/24"))
	lanHost := nat.Host("inside", netip.MustParseAddr("198.19.10.2"))
	srv := lab.Host("srv")
	other := lab.Host("other")

	s := udpListen(t, srv, srv.Underlay.String()+":3478")
	in := udpListen(t, lanHost, "198.19.10.2:51820")
	o := udpListen(t, other, other.Underlay.String()+":4000")

	// Before the LAN host sends anything: an unsolicited packet to the
	// router's WAN address at that port is dropped.
	wan := netip.AddrPortFrom(nat.Router.Underlay, 51820)
	if _, err := o.WriteToUDPAddrPort([]byte("early"), wan); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WriteToUDPAddrPort([]byte("hello"), netip.AddrPortFrom(srv.Underlay, 3478)); err != nil {
		t.Fatal(err)
	}
	msg, from, err := readFrom(s, 5*time.Second)
	if err != nil || msg != "hello" {
		t.Fatalf("server: %q, %v; want hello", msg, err)
	}
	if from != wan {
		t.Errorf("the server saw the LAN host at %s, want the router's WAN address and the same port, %s", from, wan)
	}
	if _, err := s.WriteToUDPAddrPort([]byte("reply"), from); err != nil {
		t.Fatal(err)
	}
	if msg, _, err := readFrom(in, 5*time.Second); err != nil || msg != "reply" {
		t.Fatalf("LAN host: %q, %v; want the reply", msg, err)
	}
	// Another underlay host the LAN host never sent to: dropped.
	if _, err := o.WriteToUDPAddrPort([]byte("unsolicited"), from); err != nil {
		t.Fatal(err)
	}
	if msg, _, err := readFrom(in, 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("LAN host got %q, %v from a host it never sent to; want nothing", msg, err)
	}
	// Once it sent to that host, its packets pass (a punched hole).
	if _, err := in.WriteToUDPAddrPort([]byte("punch"), netip.AddrPortFrom(other.Underlay, 4000)); err != nil {
		t.Fatal(err)
	}
	if msg, from2, err := readFrom(o, 5*time.Second); err != nil || msg != "punch" || from2 != wan {
		t.Fatalf("other host: %q from %s, %v; want punch from %s (endpoint-independent mapping)", msg, from2, err, wan)
	}
	if _, err := o.WriteToUDPAddrPort([]byte("through"), wan); err != nil {
		t.Fatal(err)
	}
	if msg, _, err := readFrom(in, 5*time.Second); err != nil || msg != "through" {
		t.Errorf("LAN host: %q, %v; want the packet through the punched hole", msg, err)
	}
	// The underlay has no way into the LAN.
	if err := srv.DialTCP(netip.MustParseAddrPort("198.19.10.2:7000"), 300*time.Millisecond); err == nil {
		t.Error("an underlay host reached the LAN")
	}
}
