//go:build linux

package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The helper process of TestBindOwnAddress: the test binary re-executed
// with bindHelperEnv set runs TestBindHelper only.
const bindHelperEnv = "LATCH_EBPF_BIND_HELPER"

// cgNodeIP is the node's own overlay address in the bind tests: a
// workload address without a cgroup.
const cgNodeIP = "100.64.0.2"

// bindResult is what the bind helper reports: the outcome (ok or the errno
// name) of binding a TCP socket to prod/a's, prod/b's, the node's and the
// wildcard address, and of sending a datagram with prod/b's address as
// source (IP_PKTINFO) from an unconnected and from a connected socket.
type bindResult struct {
	bindA, bindB, bindNode, bindAny, sendAsB, connectedSendAsB string
}

// runBindHelper starts the bind helper in a network namespace of its own,
// makes e guard that namespace (unless !scoped), moves the helper into
// cgroup (unless empty) before it opens a socket, and returns its report.
func runBindHelper(t *testing.T, e *Enforcer, cgroup string, scoped bool) bindResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBindHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), bindHelperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	next := func() string {
		for lines.Scan() {
			if l, ok := strings.CutPrefix(lines.Text(), "helper: "); ok {
				return l
			}
		}
		t.Fatalf("bind helper ended early: %v\nstderr: %s", lines.Err(), stderr.String())
		return ""
	}
	ready, cookie, _ := strings.Cut(next(), " ")
	if ready != "ready" {
		t.Fatalf("bind helper: %s %s\nstderr: %s", ready, cookie, stderr.String())
	}
	if scoped {
		c, err := strconv.ParseUint(cookie, 10, 64)
		if err != nil {
			t.Fatalf("bind helper's netns cookie %q: %v", cookie, err)
		}
		e.mu.Lock()
		err = e.setNetns(c)
		e.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	if cgroup != "" {
		if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatalf("moving the helper into %s: %v", cgroup, err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(next())
	if len(f) != 6 {
		t.Fatalf("bind helper report %q\nstderr: %s", f, stderr.String())
	}
	return bindResult{bindA: f[0], bindB: f[1], bindNode: f[2], bindAny: f[3], sendAsB: f[4], connectedSendAsB: f[5]}
}

// TestBindHelper is the helper process of TestBindOwnAddress (it does
// nothing in a normal run). In a network namespace of its own, with the
// test addresses on lo, it reports its namespace's cookie, waits for "go"
// on stdin, then binds and sends and reports on stdout.
func TestBindHelper(t *testing.T) {
	if os.Getenv(bindHelperEnv) != "1" {
		return // only a helper: TestBindOwnAddress runs it in a subprocess
	}
	fail := func(format string, a ...any) {
		fmt.Printf("helper: "+format+"\n", a...)
		os.Exit(1)
	}
	runtime.LockOSThread() // the namespace is this thread's
	if _, err := netns.New(); err != nil {
		fail("netns: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		fail("lo: %v", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		fail("lo up: %v", err)
	}
	for _, a := range []string{cgAIP, cgBIP, cgNodeIP} {
		addr, _ := netlink.ParseAddr(a + "/32")
		if err := netlink.AddrAdd(lo, addr); err != nil {
			fail("address %s: %v", a, err)
		}
	}
	cookie, err := NetnsCookie()
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("helper: ready %d\n", cookie)
	if l, _ := bufio.NewReader(os.Stdin).ReadString('\n'); l != "go\n" {
		fail("no go: %q", l)
	}

	sa := func(ip string, port int) *unix.SockaddrInet4 {
		return &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(ip).To4()), Port: port}
	}
	errStr := func(err error) string {
		var en unix.Errno
		if errors.As(err, &en) {
			return unix.ErrnoName(en)
		}
		if err != nil {
			return "error"
		}
		return "ok"
	}
	bind := func(ip string) string {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			fail("socket: %v", err)
		}
		defer unix.Close(fd)
		return errStr(unix.Bind(fd, sa(ip, 0)))
	}
	pktinfo := unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: [4]byte(net.ParseIP(cgBIP).To4())})
	send := func(connected bool) string {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			fail("socket: %v", err)
		}
		defer unix.Close(fd)
		// Outside the overlay, so that only the source is checked.
		var to unix.Sockaddr = sa("127.0.0.1", 9)
		if connected {
			if err := unix.Connect(fd, to); err != nil {
				return "connect-" + errStr(err)
			}
			to = nil
		}
		return errStr(unix.Sendmsg(fd, []byte("x"), pktinfo, to, 0))
	}
	fmt.Printf("helper: %s %s %s %s %s %s\n", bind(cgAIP), bind(cgBIP), bind(cgNodeIP), bind("0.0.0.0"), send(false), send(true))
	os.Exit(0) // no test summary on stdout
}

// TestBindOwnAddress attaches the cgroup programs to the cgroup v2 root
// and checks, with real sockets of processes in two workload cgroups and
// outside them, that only prod/b's cgroup may bind prod/b's address or
// send from it (IP_PKTINFO), that the node's address (no cgroup) is left
// to processes outside workload cgroups, and that the programs decide only
// in the namespace they guard.
func TestBindOwnAddress(t *testing.T) {
	e := loadTest(t)
	root, err := CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, fmt.Sprintf("latch-test-bind-%d-%d", os.Getpid(), rand.Uint32()))
	cgA, cgB := filepath.Join(base, "a"), filepath.Join(base, "b")
	for _, d := range []string{base, cgA, cgB} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("creating cgroup: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{cgA, cgB, base} {
			// The helpers have exited; their cgroups may take a moment to
			// become empty.
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := os.Remove(d)
				if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
					if err != nil {
						t.Errorf("removing cgroup: %v", err)
					}
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := e.Apply(cgroupView()); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCgroups(map[string]string{cgA: "prod/a", cgB: "prod/b"}); err != nil {
		t.Fatal(err)
	}
	if err := e.AttachCgroup(""); err != nil {
		t.Fatalf("AttachCgroup: %v", err)
	}
	if e.links[linkBind4] == nil {
		t.Fatal("AttachCgroup attached no bind4 link")
	}

	const ok, perm = "ok", "EPERM"
	tests := []struct {
		name, cgroup string
		scoped       bool
		want         bindResult
	}{
		{"prod/a", cgA, true, bindResult{bindA: ok, bindB: perm, bindNode: perm, bindAny: ok, sendAsB: perm, connectedSendAsB: perm}},
		{"prod/b", cgB, true, bindResult{bindA: perm, bindB: ok, bindNode: perm, bindAny: ok, sendAsB: ok, connectedSendAsB: ok}},
		{"no workload", "", true, bindResult{bindA: perm, bindB: perm, bindNode: ok, bindAny: ok, sendAsB: perm, connectedSendAsB: perm}},
		// Another namespace than the one the programs guard (another
		// agent's): nothing is refused.
		{"prod/a, other namespace", cgA, false, bindResult{bindA: ok, bindB: ok, bindNode: ok, bindAny: ok, sendAsB: ok, connectedSendAsB: ok}},
	}
	for _, tt := range tests {
		e.mu.Lock()
		err := e.setNetns(0)
		e.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if got := runBindHelper(t, e, tt.cgroup, tt.scoped); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.BindsRefused != 6 || c.SourcesRefused != 4 {
		t.Errorf("refused binds %d, sources %d; want 6 and 4", c.BindsRefused, c.SourcesRefused)
	}

	// prod/b leaves the view: its address is nobody's any more.
	v := cgroupView()
	v.Version = 2
	v.Workloads = v.Workloads[:1]
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	if got := runBindHelper(t, e, "", true); got.bindB != ok || got.bindA != perm {
		t.Errorf("no workload, prod/b gone: got %+v, want prod/b's address free and prod/a's refused", got)
	}

	// Removed: nothing is refused any more.
	e.Close()
	if err := Remove(e.pinDir); err != nil {
		t.Fatal(err)
	}
	free := bindResult{bindA: ok, bindB: ok, bindNode: ok, bindAny: ok, sendAsB: ok, connectedSendAsB: ok}
	if got := runBindHelper(t, e, "", false); got != free {
		t.Errorf("no workload after Remove: got %+v, want %+v", got, free)
	}
}
