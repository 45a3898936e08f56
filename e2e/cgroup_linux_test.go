package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/latchnet/latch/e2e/netlab"
)

const cgroupPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: srv, namespace: prod}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{podSelector: {matchLabels: {app: wa}}}, {podSelector: {matchLabels: {app: wb}}}], ports: [{port: 443}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wa, namespace: prod}
spec:
  podSelector: {matchLabels: {app: wa}}
  egress: [{to: [{podSelector: {matchLabels: {app: srv}}}], ports: [{port: 443}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wb, namespace: prod}
spec:
  podSelector: {matchLabels: {app: wb}}
  policyTypes: [Egress]
`

// TestCgroupWorkloads runs two workloads on one node in two cgroups with
// the eBPF enforcer: a connect from the allowed workload's cgroup reaches
// the destination with the workload's own overlay address, the same
// connect from the other cgroup fails at once with EPERM.
func TestCgroupWorkloads(t *testing.T) {
	c := newCluster(t)
	parent := testCgroups(t, c)

	srv := c.AddNodeWith("srv", c.joinToken("prod", "app=srv"), "app=srv", "--enforce", "ebpf")
	app := c.AddNodeWith("app", c.joinToken("prod", "app=appnode", "namespace=prod,labels=app=wa,name=wa", "namespace=prod,labels=app=wb,name=wb"), "app=appnode", "--enforce", "ebpf",
		"--workload", "name=wa,namespace=prod,labels=app=wa,cgroup="+filepath.Join(parent, "a"),
		"--workload", "name=wb,namespace=prod,labels=app=wb,cgroup="+filepath.Join(parent, "b"))
	if _, err := c.applyPolicy(cgroupPolicy); err != nil {
		t.Fatal(err)
	}
	c.expectPeers(15*time.Second, map[string][]string{"srv": {"app"}, "app": {"srv"}})
	srvIP := c.overlayIP(srv)
	srv.host.ServeTCP(t, netip.AddrPortFrom(srvIP, 443))

	// connectFrom runs nc in app's namespace inside cgroup dir and returns
	// its output and error.
	connectFrom := func(dir string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := app.host.Command(ctx, "sh", "-c", "read go; exec nc -v -z -w 3 "+srvIP.String()+" 443")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return "", err
		}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			return "", err
		}
		// `ip netns exec` execs the shell: the pid is the shell's.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return "", fmt.Errorf("moving the process into %s: %w", dir, err)
		}
		io.WriteString(stdin, "go\n")
		stdin.Close()
		err = cmd.Wait()
		return out.String(), err
	}
	netlab.Eventually(t, 20*time.Second, func() error {
		out, err := connectFrom(filepath.Join(parent, "a"))
		if err != nil {
			return fmt.Errorf("workload wa -> srv:443: %v: %s", err, out)
		}
		return nil
	})
	out, err := connectFrom(filepath.Join(parent, "b"))
	if err == nil || !strings.Contains(out, "not permitted") {
		t.Fatalf("workload wb -> srv:443 (its egress allows nothing): %v: %q; want EPERM (Operation not permitted)", err, out)
	}
}

// testCgroups makes the cgroups a and b under a parent of its own, on a
// cgroup2 mount outside /sys, so that the agents (run through `ip netns
// exec`, which remounts /sys) see them; it returns the parent. Cleanup
// removes them and the mount, and fails the test if a cgroup stays.
func testCgroups(t *testing.T, c *cluster) string {
	t.Helper()
	cg := filepath.Join(t.TempDir(), "cgroup2")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "cgroup2", "none", cg).CombinedOutput(); err != nil {
		t.Fatalf("mounting cgroup2: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", cg).Run() })
	c.lab.Leaks().Mount(cg)
	// Checked before the umount above, after the removal below.
	leaks := netlab.CheckLeaks(t)
	parent := filepath.Join(cg, "latch-e2e-"+c.lab.Suffix())
	dirs := []string{parent, filepath.Join(parent, "a"), filepath.Join(parent, "b")}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		leaks.Path("cgroup", d)
	}
	t.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			// The processes have exited; their cgroup may take a moment
			// to become empty.
			netlab.Eventually(t, 5*time.Second, func() error {
				if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
				}
				return nil
			})
		}
	})
	return parent
}

// bindHelperEnv makes the test binary, re-executed, a helper that binds
// the address in it (TestBindHelper).
const bindHelperEnv = "LATCH_E2E_BIND_ADDR"

// TestBindHelper is the helper process of TestCgroupBindOwnAddress (it does
// nothing in a normal run): it binds a TCP socket to the address in
// $LATCH_E2E_BIND_ADDR, port 0, with IP_FREEBIND (so that only a refusal
// by a hook fails it), and prints "bind: ok" or "bind: ERRNO".
func TestBindHelper(t *testing.T) {
	addr := os.Getenv(bindHelperEnv)
	if addr == "" {
		return // only a helper
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is4() {
		fmt.Printf("bind: bad address %q\n", addr)
		os.Exit(1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
	}
	if err != nil {
		fmt.Printf("bind: socket: %v\n", err)
		os.Exit(1)
	}
	res := "ok"
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip.As4()}); err != nil {
		var en unix.Errno
		if !errors.As(err, &en) {
			fmt.Printf("bind: %v\n", err)
			os.Exit(1)
		}
		res = unix.ErrnoName(en)
	}
	fmt.Printf("bind: %s\n", res)
	os.Exit(0) // no test summary on stdout
}

// bindFrom binds addr inside h from a fresh process, moved into the cgroup
// dir first unless dir is "", and returns "ok" or the errno name.
func bindFrom(t *testing.T, h *netlab.Host, dir string, addr netip.Addr) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := h.Command(ctx, "sh", "-c", `read go; exec "$0" -test.run='^TestBindHelper$' -test.count=1`, os.Args[0])
	cmd.Env = append(os.Environ(), bindHelperEnv+"="+addr.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if dir != "" {
		// `ip netns exec` execs the shell: the pid is the shell's.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("moving the process into %s: %v", dir, err)
		}
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	err = cmd.Wait()
	for line := range strings.Lines(out.String()) {
		if res, ok := strings.CutPrefix(strings.TrimSpace(line), "bind: "); ok && err == nil {
			return res
		}
	}
	t.Fatalf("bind helper in %s (cgroup %q): %v: %s", h.Name, dir, err, out.String())
	return ""
}

// TestCgroupBindOwnAddress: with two workloads in two cgroups on one node
// (eBPF enforcer), a process in workload wa's cgroup and one outside every
// workload cgroup cannot bind workload wb's overlay address (EPERM), so
// they cannot send as wb; wb itself can. The node's own address is refused
// to the workloads and left to the other processes. A process in another
// agent's network namespace binds wb's address freely: each agent's hook
// decides only in its own namespace.
func TestCgroupBindOwnAddress(t *testing.T) {
	c := newCluster(t)
	parent := testCgroups(t, c)
	cgA, cgB := filepath.Join(parent, "a"), filepath.Join(parent, "b")

	srv := c.AddNodeWith("srv", c.joinToken("prod", "app=srv"), "app=srv", "--enforce", "ebpf")
	app := c.AddNodeWith("app", c.joinToken("prod", "app=appnode", "namespace=prod,labels=app=wa,name=wa", "namespace=prod,labels=app=wb,name=wb"), "app=appnode", "--enforce", "ebpf",
		"--workload", "name=wa,namespace=prod,labels=app=wa,cgroup="+cgA,
		"--workload", "name=wb,namespace=prod,labels=app=wb,cgroup="+cgB)
	if _, err := c.applyPolicy(cgroupPolicy); err != nil {
		t.Fatal(err)
	}
	c.expectPeers(15*time.Second, map[string][]string{"srv": {"app"}, "app": {"srv"}})
	var ips map[string]netip.Addr
	netlab.Eventually(t, 15*time.Second, func() (err error) {
		ips, err = c.workloadIPs(app, []string{"prod/wa", "prod/wb"})
		return err
	})
	wa, wb, node := ips["prod/wa"], ips["prod/wb"], c.overlayIP(app)

	// The hooks are attached once the workloads' cgroups are known to the
	// enforcer: wait for wb's own bind to be the only one that passes.
	netlab.Eventually(t, 20*time.Second, func() error {
		if got := bindFrom(t, app.host, cgA, wb); got != "EPERM" {
			return fmt.Errorf("wa binds wb's address %s: %s, want EPERM", wb, got)
		}
		return nil
	})
	for _, tc := range []struct {
		name, dir string
		addr      netip.Addr
		want      string
	}{
		{"wb binds its own address", cgB, wb, "ok"},
		{"wa binds its own address", cgA, wa, "ok"},
		{"a process outside the workload cgroups binds wb's address", "", wb, "EPERM"},
		{"a process outside the workload cgroups binds the node's address", "", node, "ok"},
		{"wa binds the node's address", cgA, node, "EPERM"},
		{"wa binds the wildcard address", cgA, netip.IPv4Unspecified(), "ok"},
	} {
		if got := bindFrom(t, app.host, tc.dir, tc.addr); got != tc.want {
			t.Errorf("%s (%s): %s, want %s", tc.name, tc.addr, got, tc.want)
		}
	}
	// Another agent's namespace (the same cgroup hierarchy, app's hooks
	// attached at its root) is not app's business.
	if got := bindFrom(t, srv.host, "", wb); got != "ok" {
		t.Errorf("a process in srv's namespace binds %s: %s, want ok (app's hook must not decide there)", wb, got)
	}
}
