package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// A cgroup2 mount outside /sys, so that the agents (run through `ip
	// netns exec`, which remounts /sys) see the test's cgroups.
	cg := filepath.Join(t.TempDir(), "cgroup2")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "cgroup2", "none", cg).CombinedOutput(); err != nil {
		t.Fatalf("mounting cgroup2: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", cg).Run() })
	parent := filepath.Join(cg, "latch-e2e-"+c.lab.Suffix())
	for _, d := range []string{parent, filepath.Join(parent, "a"), filepath.Join(parent, "b")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{filepath.Join(parent, "a"), filepath.Join(parent, "b"), parent} {
			os.Remove(d)
		}
	})

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
