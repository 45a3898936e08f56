package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
	"github.com/latchnet/latch/inventory"
)

// workloadStatus is one entry of "workloads" in `latch status --json`.
type workloadStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
}

// workloadIPs reads n's workloads and their overlay addresses from
// `latch status --json`, keyed "namespace/name". It fails unless every
// one of want has an address.
func (c *cluster) workloadIPs(n *node, want []string) (map[string]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Command(ctx, c.bin, "status", "--state-dir", n.state, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("latch status on %s: %v", n.name, err)
	}
	var st struct {
		Workloads []workloadStatus `json:"workloads"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("latch status on %s: %v: %s", n.name, err, out)
	}
	ips := map[string]netip.Addr{}
	for _, w := range st.Workloads {
		if ip, err := netip.ParseAddr(w.IP); err == nil {
			ips[w.Namespace+"/"+w.Name] = ip
		}
	}
	for _, k := range want {
		if !ips[k].IsValid() {
			return nil, fmt.Errorf("%s reports no address for workload %s yet: %s", n.name, k, out)
		}
	}
	return ips, nil
}

// DialTCPFrom opens a TCP connection from src, inside h, to dst and closes
// it, failing after timeout.
func DialTCPFrom(h *netlab.Host, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	return h.Do(func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp4", dst.String())
		if err != nil {
			return fmt.Errorf("%s: tcp %v -> %v: %w", h.Name, src, dst, err)
		}
		return c.Close()
	})
}

// UDPEchoFrom sends one datagram from src, inside h, to dst and waits up to
// timeout for the echo (see ServeUDPEcho).
func UDPEchoFrom(h *netlab.Host, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	return h.Do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return fmt.Errorf("%s: udp %v -> %v: %w", h.Name, src, dst, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		msg := []byte("latch-e2e-" + src.String())
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("%s: udp %v -> %v: %w", h.Name, src, dst, err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%s: udp %v -> %v: no echo within %v", h.Name, src, dst, timeout)
			}
			return fmt.Errorf("%s: udp %v -> %v: %w", h.Name, src, dst, err)
		}
		if string(buf[:n]) != string(msg) {
			return fmt.Errorf("%s: udp %v -> %v: echo %q, want %q", h.Name, src, dst, buf[:n], msg)
		}
		return nil
	})
}

// evalRow is one row of `latch policy eval -o json`.
type evalRow struct {
	From     string             `json:"from"`
	To       string             `json:"to"`
	Port     uint16             `json:"port"`
	Protocol inventory.Protocol `json:"protocol"`
	Allowed  bool               `json:"allowed"`
}

// policyEval runs `latch policy eval` over inv and the policy document and
// returns its rows.
func (c *cluster) policyEval(inv inventory.Inventory, policyDoc string) ([]evalRow, error) {
	out, err := c.policyEvalJSON(inv, policyDoc)
	if err != nil {
		return nil, err
	}
	var res struct {
		Results []evalRow `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("latch policy eval: %v: %s", err, out)
	}
	return res.Results, nil
}

// policyEvalJSON runs `latch policy eval -o json` over inv and the policy
// document and returns its output.
func (c *cluster) policyEvalJSON(inv inventory.Inventory, policyDoc string) ([]byte, error) {
	dir := c.t.TempDir()
	invData, err := json.MarshalIndent(inv, "", "  ") // JSON is YAML
	if err != nil {
		return nil, err
	}
	invFile, polFile := dir+"/inventory.yaml", dir+"/policy.yaml"
	if err := os.WriteFile(invFile, invData, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(polFile, []byte(policyDoc), 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.coord.Command(ctx, c.bin, "policy", "eval", "--inventory", invFile, "--policy", polFile, "-o", "json")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("latch policy eval: %v: %s", err, stderr)
	}
	return out, nil
}
