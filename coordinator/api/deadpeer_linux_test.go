package api

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDeadPeerSocketOptions: every connection the listener accepts has
// TCP keepalive probes and TCP_USER_TIMEOUT set so that a silent peer is
// dropped within Limits.DeadPeerTimeout, idle or with data in flight.
func TestDeadPeerSocketOptions(t *testing.T) {
	for _, c := range []struct {
		d                         time.Duration
		idle, intvl, cnt, userTmo int
	}{
		{3 * time.Second, 1, 1, 2, 3000},
		{9 * time.Second, 3, 3, 2, 9000},
	} {
		base, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln := deadPeerListener{Listener: base, timeout: c.d}
		client, err := net.Dial("tcp", base.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		var gerr error
		if err := raw.Control(func(fd uintptr) {
			for name, opt := range map[string][2]int{
				"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
				"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
				"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
				"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
				"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
			} {
				v, err := unix.GetsockoptInt(int(fd), opt[0], opt[1])
				if err != nil {
					gerr = err
				}
				got[name] = v
			}
		}); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatal(gerr)
		}
		want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": c.idle, "TCP_KEEPINTVL": c.intvl, "TCP_KEEPCNT": c.cnt, "TCP_USER_TIMEOUT": c.userTmo}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("timeout %v: %s = %d, want %d", c.d, k, got[k], v)
			}
		}
		conn.Close()
		client.Close()
		base.Close()
	}
}
