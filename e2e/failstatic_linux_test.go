package e2e

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// TestFailStaticEnforcement kills a node with kill -9 while the
// coordinator is down and starts it again: from its saved view alone it
// must bring the tunnel back, let the allowed flow through and keep
// refusing what the policy denies (for the eBPF enforcer: its maps and
// links are pinned in a bpffs the test mounts, as /sys/fs/bpf is on a
// host, and the restarted agent adopts them; `latch node --cleanup`
// removes them at the end).
func TestFailStaticEnforcement(t *testing.T) {
	for _, mode := range []string{"ebpf", "userspace"} {
		t.Run(mode, func(t *testing.T) {
			c := newCluster(t)
			pins := ""
			if mode == "ebpf" {
				pins = filepath.Join(t.TempDir(), "bpffs")
				if err := os.MkdirAll(pins, 0o700); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("mount", "-t", "bpf", "bpf", pins).CombinedOutput(); err != nil {
					t.Fatalf("mounting bpffs: %v %s", err, out)
				}
				t.Cleanup(func() { exec.Command("umount", "-l", pins).Run() })
				c.lab.Leaks().Mount(pins)
				// The agents keep their pins when they stop (fail-static);
				// once they are stopped, `latch node --cleanup` must remove
				// them all, before the umount.
				leaks := netlab.CheckLeaks(t)
				leaks.Tree("BPF pin", pins)
				t.Cleanup(func() {
					for name, n := range c.nodes {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						out, err := n.host.Run(ctx, c.bin, "node", "--cleanup", "--iface", n.iface, "--bpf-pin-dir", filepath.Join(pins, name))
						cancel()
						if err != nil {
							t.Errorf("removing %s's pins: %v: %s", name, err, out)
						}
					}
				})
			}
			extra := func(name string) []string {
				if pins == "" {
					return []string{"--enforce", mode}
				}
				return []string{"--enforce", mode, "--bpf-pin-dir", filepath.Join(pins, name)}
			}
			web := c.AddNodeWith("web", c.joinToken("prod", "app=web"), "app=web", extra("web")...)
			laptop := c.AddNodeWith("laptop", c.joinToken("prod", "app=laptop"), "app=laptop", extra("laptop")...)
			if _, err := c.applyPolicy(chainPolicy); err != nil {
				t.Fatal(err)
			}
			c.expectPeers(15*time.Second, map[string][]string{"web": {"laptop"}, "laptop": {"web"}})
			webIP, laptopIP := c.overlayIP(web), c.overlayIP(laptop)
			web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 443))
			laptop.host.ServeTCP(t, netip.AddrPortFrom(laptopIP, 22))
			netlab.Eventually(t, 20*time.Second, func() error {
				return laptop.host.DialTCP(netip.AddrPortFrom(webIP, 443), 2*time.Second)
			})

			// The coordinator goes away, then web dies hard and comes back.
			c.coordP.Kill(9)
			c.coordP.Wait(10 * time.Second)
			web.proc.Kill(9)
			web.proc.Wait(10 * time.Second)
			web.proc = web.host.Start(t, nil, web.args...)
			netlab.Eventually(t, 20*time.Second, func() error {
				_, err := c.status(web)
				return err
			})
			netlab.Eventually(t, 20*time.Second, func() error {
				return laptop.host.DialTCP(netip.AddrPortFrom(webIP, 443), 2*time.Second)
			})
			if err := web.host.DialTCP(netip.AddrPortFrom(laptopIP, 22), 1500*time.Millisecond); err == nil {
				t.Error("after a restart without the coordinator, web reached laptop:22, which the policy denies")
			}
			st, err := c.status(web)
			if err != nil {
				t.Fatal(err)
			}
			if st.Connected {
				t.Error("web says it is connected although the coordinator is down")
			}
		})
	}
}
