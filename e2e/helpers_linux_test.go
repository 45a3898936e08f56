package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// joinToken creates a single-use join token for namespace ns that gives
// the node exactly labels (k=v,k=v; a node's labels come from its token)
// and grants it the workloads specs (namespace=NS[,labels=k=v;k=v][,name=P]).
func (c *cluster) joinToken(ns, labels string, workloads ...string) string {
	c.t.Helper()
	args := []string{"--namespace", ns, "--ttl", "10m"}
	if labels != "" {
		args = append(args, "--labels", labels)
	}
	for _, w := range workloads {
		args = append(args, "--workload", w)
	}
	return c.token(args...)
}

// AddNodeWith starts `latch node` with extra flags (for example
// "--enforce", "userspace") in a new host and waits until it is connected.
// labels, if not empty, must be the token's (the node checks them).
func (c *cluster) AddNodeWith(name, token, labels string, extra ...string) *node {
	c.t.Helper()
	c.nextIdx++
	h := c.lab.Host(name)
	n := &node{name: name, host: h, state: c.t.TempDir(), iface: fmt.Sprintf("lt%s%02d", c.lab.Suffix(), c.nextIdx)}
	n.args = []string{c.bin, "node", "--coordinator", c.url, "--state-dir", n.state, "--iface", n.iface,
		"--name", name, "--endpoint", h.Underlay.String() + ":51820", "--listen-port", "51820"}
	if labels != "" {
		n.args = append(n.args, "--labels", labels)
	}
	n.args = append(n.args, extra...)
	n.proc = h.Start(c.t, nil, append(n.args, "--join-token", token)...)
	c.nodes[name] = n
	c.WaitConnected(n, 20*time.Second)
	return n
}

// WaitConnected waits until n's agent reports a connection and an address.
func (c *cluster) WaitConnected(n *node, timeout time.Duration) {
	c.t.Helper()
	netlab.Eventually(c.t, timeout, func() error {
		st, err := c.status(n)
		if err != nil {
			return err
		}
		if !st.Connected || st.IP == "" {
			return fmt.Errorf("node %s not connected yet: %+v", n.name, st)
		}
		return nil
	})
}

// ServeUDPEcho answers every datagram to addr, inside h, with the same
// bytes, until cleanup.
func ServeUDPEcho(t testing.TB, h *netlab.Host, addr netip.AddrPort) {
	t.Helper()
	var pc net.PacketConn
	if err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr.String())
		return err
	}); err != nil {
		t.Fatalf("%s: listening on udp %v: %v", h.Name, addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
}

// UDPEcho sends one datagram from inside h to addr and waits up to timeout
// for the echo.
func UDPEcho(h *netlab.Host, addr netip.AddrPort, timeout time.Duration) error {
	return h.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp4", addr.String())
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		msg := []byte("latch-e2e-" + h.Name)
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("%s: udp %v: %w", h.Name, addr, err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%s: udp %v: no echo within %v", h.Name, addr, timeout)
			}
			return fmt.Errorf("%s: udp %v: %w", h.Name, addr, err)
		}
		if string(buf[:n]) != string(msg) {
			return fmt.Errorf("%s: udp %v: echo %q, want %q", h.Name, addr, buf[:n], msg)
		}
		return nil
	})
}
