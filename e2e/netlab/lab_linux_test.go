package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestPingOverBridge(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	if a.Underlay == b.Underlay || !lab.Underlay().Contains(a.Underlay) || !lab.Underlay().Contains(b.Underlay) {
		t.Fatalf("underlay addresses %v, %v: want two distinct addresses in %v", a.Underlay, b.Underlay, lab.Underlay())
	}
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatalf("ping not found (apt-get install -y --no-install-recommends iputils-ping): %v", err)
	}
	ctx := t.Context()
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		out, err := from.Run(ctx, "ping", "-c1", "-W1", to.Underlay.String())
		if err != nil {
			t.Errorf("ping %s -> %s: %v", from.Name, to.Name, err)
		} else if !strings.Contains(out, "1 received") {
			t.Errorf("ping %s -> %s: no reply in output:\n%s", from.Name, to.Name, out)
		}
	}
}

func TestWithUnderlay(t *testing.T) {
	lab := New(t, WithUnderlay(netip.MustParsePrefix("198.18.7.0/30")))
	a, b := lab.Host("a"), lab.Host("b")
	if a.Underlay != netip.MustParseAddr("198.18.7.1") || b.Underlay != netip.MustParseAddr("198.18.7.2") {
		t.Errorf("addresses %v, %v; want 198.18.7.1, 198.18.7.2", a.Underlay, b.Underlay)
	}
	if out, err := a.Run(t.Context(), "ping", "-c1", "-W1", b.Underlay.String()); err != nil {
		t.Errorf("ping: %v\n%s", err, out)
	}
}

func TestWithUnderlayRefusesNonTestPrefixes(t *testing.T) {
	for _, p := range []string{"10.0.0.0/24", "192.168.1.0/24", "198.18.0.0/31", "198.16.0.0/14", "2001:db8::/64"} {
		var c config
		if err := WithUnderlay(netip.MustParsePrefix(p))(&c); err == nil {
			t.Errorf("WithUnderlay(%s) accepted", p)
		}
	}
	for _, p := range []string{"198.18.0.0/24", "198.19.255.0/24", "198.18.0.0/15", "198.18.9.4/30"} {
		var c config
		if err := WithUnderlay(netip.MustParsePrefix(p))(&c); err != nil {
			t.Errorf("WithUnderlay(%s): %v", p, err)
		}
	}
}

func TestDialTCP(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	open := b.ServeTCP(t, netip.AddrPortFrom(b.Underlay, 443))
	if open != netip.AddrPortFrom(b.Underlay, 443) {
		t.Errorf("ServeTCP bound %v, want %v", open, netip.AddrPortFrom(b.Underlay, 443))
	}
	// Port 0 picks a free port and reports it.
	any0 := b.ServeTCP(t, netip.AddrPortFrom(b.Underlay, 0))
	if any0.Port() == 0 {
		t.Errorf("ServeTCP on port 0 reported port 0")
	}

	for _, ap := range []netip.AddrPort{open, any0} {
		if err := a.DialTCP(ap, 2*time.Second); err != nil {
			t.Errorf("dial %v from a: %v", ap, err)
		}
	}
	// Several dials in a row: the listener keeps accepting.
	for i := range 5 {
		if err := a.DialTCP(open, 2*time.Second); err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
	}

	closed := netip.AddrPortFrom(b.Underlay, 444)
	start := time.Now()
	err := a.DialTCP(closed, 3*time.Second)
	elapsed := time.Since(start)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial closed port %v: %v, want connection refused", closed, err)
	}
	if elapsed > time.Second {
		t.Errorf("dial to a closed port took %v, want a quick refusal", elapsed)
	}

	// The listener is in b's namespace only: the same port on a refuses.
	if err := a.DialTCP(netip.AddrPortFrom(a.Underlay, 443), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a's own 443: %v, want connection refused", err)
	}
}

func TestDoSeesHostInterfaces(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	for _, h := range []*Host{a, b} {
		var names []string
		var addrs []netip.Addr
		err := h.Do(func() error {
			links, err := netlink.LinkList()
			if err != nil {
				return err
			}
			for _, l := range links {
				names = append(names, l.Attrs().Name)
			}
			link, err := netlink.LinkByName(h.Link)
			if err != nil {
				return err
			}
			if link.Type() != "veth" {
				return fmt.Errorf("%s is a %s, want veth", h.Link, link.Type())
			}
			as, err := netlink.AddrList(link, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, a := range as {
				ip, _ := netip.AddrFromSlice(a.IP)
				addrs = append(addrs, ip.Unmap())
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: Do: %v", h.Name, err)
		}
		if !slices.Contains(names, "lo") || !slices.Contains(names, h.Link) {
			t.Errorf("%s: links %v, want lo and %s", h.Name, names, h.Link)
		}
		if !slices.Equal(addrs, []netip.Addr{h.Underlay}) {
			t.Errorf("%s: %s has %v, want exactly %v", h.Name, h.Link, addrs, h.Underlay)
		}
	}

	// The test's own namespace is untouched: no underlay address in it.
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		ip, _ := netip.AddrFromSlice(ad.IP)
		if lab.Underlay().Contains(ip.Unmap()) {
			t.Errorf("root namespace has lab address %v", ip)
		}
	}

	// Errors and panics of fn come back to the caller.
	sentinel := errors.New("sentinel")
	if err := a.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want the sentinel", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		_ = a.Do(func() error { panic("boom") })
	}()
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestStartedProcessesKilledAtCleanup(t *testing.T) {
	var (
		proc     *Proc
		childPid int
	)
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		a := lab.Host("a")
		proc = a.Start(t, []string{"NETLAB_GREETING=hello-from-a"},
			"sh", "-c", `echo "$NETLAB_GREETING"; ip -o -4 addr show dev eth0; sleep 600 & echo "child=$!"; wait`)
		Eventually(t, 5*time.Second, func() error {
			out := proc.Output()
			if !strings.Contains(out, "hello-from-a") || !strings.Contains(out, a.Underlay.String()) || !strings.Contains(out, "child=") {
				return fmt.Errorf("output so far: %q", out)
			}
			return nil
		})
		line := proc.Output()[strings.Index(proc.Output(), "child=")+len("child="):]
		var err error
		if childPid, err = strconv.Atoi(strings.TrimSpace(strings.SplitN(line, "\n", 2)[0])); err != nil {
			t.Fatalf("child pid in %q: %v", line, err)
		}
		if !alive(proc.Pid) || !alive(childPid) {
			t.Fatalf("process %d or child %d not running", proc.Pid, childPid)
		}
		if err := proc.Wait(10 * time.Millisecond); !errors.Is(err, ErrRunning) {
			t.Errorf("Wait on a running process: %v, want ErrRunning", err)
		}
	})
	select {
	case <-proc.Done():
	default:
		t.Fatalf("process %d not reaped after cleanup", proc.Pid)
	}
	if alive(proc.Pid) {
		t.Errorf("process %d alive after cleanup", proc.Pid)
	}
	if alive(childPid) {
		t.Errorf("forked child %d alive after cleanup", childPid)
	}
}

func TestProcKillAndWait(t *testing.T) {
	lab := New(t)
	a := lab.Host("a")
	p := a.Start(t, nil, "sleep", "600")
	if err := p.Kill(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := p.Wait(5 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("Wait after SIGTERM: %v, want killed by SIGTERM", err)
	}
	if err := p.Kill(syscall.SIGTERM); err == nil {
		t.Error("Kill of an exited process succeeded")
	}

	q := a.Start(t, nil, "true")
	if err := q.Wait(5 * time.Second); err != nil {
		t.Errorf("true: %v", err)
	}
}

func TestRunBoundedAndReportsErrors(t *testing.T) {
	lab := New(t)
	a := lab.Host("a")
	out, err := a.Run(t.Context(), "sh", "-c", "echo oops >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "oops") || !strings.Contains(out, "oops") {
		t.Errorf("Run of a failing command: out %q, err %v", out, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := a.Run(ctx, "sleep", "600"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its deadline: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run past its deadline returned after %v", d)
	}
}

func TestHostNames(t *testing.T) {
	lab := New(t)
	a := lab.Host("node-1")
	if want := "latch-node-1-" + lab.Suffix(); a.NS != want {
		t.Errorf("NS = %q, want %q", a.NS, want)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || !strings.Contains(string(out), a.NS) {
		t.Errorf("ip netns list (%v) lacks %s:\n%s", err, a.NS, out)
	}
}

// leftovers lists namespaces and root-namespace links whose names hold
// suffix.
func leftovers(t *testing.T, suffix string) []string {
	t.Helper()
	var found []string
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, suffix) {
				found = append(found, line)
			}
		}
	}
	// Namespaces are unmounted at once but destroyed asynchronously; their
	// bind mounts must be gone.
	matches, _ := filepath.Glob("/run/netns/*" + suffix + "*")
	return append(found, matches...)
}

func TestCleanupLeavesNothing(t *testing.T) {
	var suffix string
	var nss []string
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		suffix = lab.Suffix()
		a, b := lab.Host("a"), lab.Host("b")
		nss = []string{a.NS, b.NS, "latch-hub-" + suffix}
		b.ServeTCP(t, netip.AddrPortFrom(b.Underlay, 80))
		a.Start(t, nil, "sleep", "600")
		if got := leftovers(t, suffix); len(got) < 3 {
			t.Fatalf("expected the lab's namespaces while it runs, found %q", got)
		}
	})
	if suffix == "" {
		t.Fatal("lab not created")
	}
	if got := leftovers(t, suffix); len(got) > 0 {
		t.Errorf("left behind after cleanup: %q (namespaces were %v)", got, nss)
	}
}

// helperEnv selects the helper mode in a subprocess run of this test binary.
const helperEnv = "NETLAB_TEST_HELPER"

// TestHelperFailingLab is not a test on its own: TestCleanupAfterFailure
// runs it in a subprocess, where it builds a lab and then fails or panics.
func TestHelperFailingLab(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return // only a helper: TestCleanupAfterFailure runs it in a subprocess
	}
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	b.ServeTCP(t, netip.AddrPortFrom(b.Underlay, 80))
	p := a.Start(t, nil, "sh", "-c", "echo marker-output; exec sleep 600")
	Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(p.Output(), "marker-output") {
			return errors.New("no output yet")
		}
		return nil
	})
	fmt.Printf("\nNETLAB_SUFFIX=%s NETLAB_PID=%d\n", lab.Suffix(), p.Pid)
	switch mode {
	case "fatal":
		t.Fatal("failing on purpose")
	case "panic":
		panic("panicking on purpose")
	case "needs-root":
		// Reached only as root.
	}
}

func TestCleanupAfterFailure(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		return // running as a helper subprocess
	}
	_ = New(t) // skip or fail like the other tests when not root
	for _, mode := range []string{"fatal", "panic"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperFailingLab$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("helper succeeded, want failure:\n%s", out)
			}
			var suffix string
			var pid int
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if n, _ := fmt.Sscanf(sc.Text(), "NETLAB_SUFFIX=%s NETLAB_PID=%d", &suffix, &pid); n == 2 {
					break
				}
			}
			if suffix == "" || pid == 0 {
				t.Fatalf("helper did not report its lab:\n%s", out)
			}
			if got := leftovers(t, suffix); len(got) > 0 {
				t.Errorf("left behind after a %s: %q\nhelper output:\n%s", mode, got, out)
			}
			if alive(pid) {
				t.Errorf("process %d alive after a %s", pid, mode)
			}
			if mode == "fatal" && !strings.Contains(string(out), "marker-output") {
				t.Errorf("process output not dumped into the failed test's log:\n%s", out)
			}
		})
	}
}

// TestSkipsOrFailsWithoutRoot runs the helper as an unprivileged user: with
// CI unset it must skip saying it needs root, with CI=true it must fail.
func TestSkipsOrFailsWithoutRoot(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		return // running as a helper subprocess
	}
	_ = New(t) // we must be root to switch to another user
	// The test binary lives in a root-only build directory: copy it where
	// nobody can execute it.
	dir, err := os.MkdirTemp("", "netlab-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "netlab.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}

	for _, ci := range []string{"", "true"} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestHelperFailingLab$", "-test.v", "-test.count=1")
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), helperEnv + "=needs-root"}
		if ci != "" {
			cmd.Env = append(cmd.Env, "CI="+ci)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		cancel()
		switch {
		case ci == "" && (err != nil || !strings.Contains(string(out), "SKIP") || !strings.Contains(string(out), "needs root")):
			t.Errorf("CI unset: want a skip saying the test needs root, got err %v:\n%s", err, out)
		case ci != "" && (err == nil || !strings.Contains(string(out), "FAIL") || !strings.Contains(string(out), "needs root")):
			t.Errorf("CI=%s: want a failure, got err %v:\n%s", ci, err, out)
		}
	}
}
