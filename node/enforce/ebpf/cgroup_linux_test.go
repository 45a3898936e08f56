//go:build linux

package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/latchnet/latch/node/enforce"
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

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// The helper process of TestAttachCgroup: the test binary re-executed with
// helperEnv set runs TestCgroupHelper only.
const helperEnv = "LATCH_EBPF_CGROUP_HELPER"

const (
	cgAIP   = "100.64.0.10" // prod/a: may connect to TCP 80 of identity 900
	cgBIP   = "100.64.0.11" // prod/b: may send to UDP 53 of anyone
	cgDstIP = "100.64.9.9"  // identity 900
)

func cgroupView() *view.View {
	return &view.View{
		Node: "n1", Version: 1,
		Identities: []view.IdentityEntry{
			{IP: view.MustAddr(cgAIP), Identity: 256},
			{IP: view.MustAddr(cgBIP), Identity: 257},
			{IP: view.MustAddr(cgDstIP), Identity: 900},
		},
		Workloads: []view.WorkloadRules{
			{
				Workload: "prod/a", IP: view.MustAddr(cgAIP), Identity: 256,
				Ingress: view.Rules{Isolated: true},
				Egress: view.Rules{Isolated: true, Identities: []view.IdentityRule{
					{Identity: 900, Ports: []view.PortRange{tcpPorts(80, 80)}},
				}},
			},
			{
				Workload: "prod/b", IP: view.MustAddr(cgBIP), Identity: 257,
				Ingress: view.Rules{Isolated: true},
				Egress: view.Rules{Isolated: true, Any: []view.PortRange{
					{Protocol: inventory.UDP, First: 53, Last: 53},
				}},
			},
		},
	}
}

// helperResult is what the helper reports: the outcome of a TCP connect to
// cgDstIP:80 and of a UDP send to cgDstIP:53, with the source address the
// connecting socket got and the one the datagram arrived with.
type helperResult struct {
	tcpErr, tcpLocal, udpErr, udpSrc string
}

// runHelper starts the helper in a network namespace of its own, moves it
// into cgroup (unless empty) before it opens any socket, and returns its
// report.
func runHelper(t *testing.T, cgroup string) helperResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCgroupHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
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
		t.Fatalf("helper ended early: %v\nstderr: %s", lines.Err(), stderr.String())
		return ""
	}
	if l := next(); l != "ready" {
		t.Fatalf("helper: %s\nstderr: %s", l, stderr.String())
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
	if len(f) != 4 {
		t.Fatalf("helper report %q\nstderr: %s", f, stderr.String())
	}
	return helperResult{tcpErr: f[0], tcpLocal: f[1], udpErr: f[2], udpSrc: f[3]}
}

// TestCgroupHelper is the helper process of TestAttachCgroup (it does
// nothing in a normal run). In a network namespace of its own, with the
// test addresses on lo and listeners on cgDstIP, it waits for "go" on
// stdin, then connects and sends and reports on stdout.
func TestCgroupHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return // only a helper: TestAttachCgroup runs it in a subprocess
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
	for _, a := range []string{cgAIP, cgBIP, cgDstIP} {
		addr, _ := netlink.ParseAddr(a + "/32")
		if err := netlink.AddrAdd(lo, addr); err != nil {
			fail("address %s: %v", a, err)
		}
	}
	sa := func(ip string, port int) *unix.SockaddrInet4 {
		return &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(ip).To4()), Port: port}
	}
	str := func(s unix.Sockaddr) string {
		if in, ok := s.(*unix.SockaddrInet4); ok {
			return net.IP(in.Addr[:]).String()
		}
		return "none"
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
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err == nil {
		err = unix.Bind(ln, sa(cgDstIP, 80))
	}
	if err == nil {
		err = unix.Listen(ln, 8)
	}
	if err != nil {
		fail("tcp listener: %v", err)
	}
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err == nil {
		err = unix.Bind(udp, sa(cgDstIP, 53))
	}
	if err == nil {
		err = unix.SetsockoptTimeval(udp, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	}
	if err != nil {
		fail("udp listener: %v", err)
	}
	fmt.Println("helper: ready")
	if l, _ := bufio.NewReader(os.Stdin).ReadString('\n'); l != "go\n" {
		fail("no go: %q", l)
	}

	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fail("socket: %v", err)
	}
	cerr := unix.Connect(c, sa(cgDstIP, 80))
	local, _ := unix.Getsockname(c)

	u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		fail("socket: %v", err)
	}
	uerr := unix.Sendto(u, []byte("x"), 0, sa(cgDstIP, 53))
	src := "none"
	if uerr == nil {
		buf := make([]byte, 16)
		if _, from, err := unix.Recvfrom(udp, buf, 0); err == nil {
			src = str(from)
		}
	}
	fmt.Printf("helper: %s %s %s %s\n", errStr(cerr), str(local), errStr(uerr), src)
	os.Exit(0) // no test summary on stdout
}

// TestAttachCgroup attaches the cgroup programs to the cgroup v2 root and
// checks, with real sockets of processes in two workload cgroups, that
// they get their workload's source address, that each workload's egress
// rules decide (EPERM when denied), that other cgroups are untouched, that
// a second Load adopts the links and that Remove detaches them.
func TestAttachCgroup(t *testing.T) {
	e := loadTest(t)
	root, err := CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, fmt.Sprintf("latch-test-%d-%d", os.Getpid(), rand.Uint32()))
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

	if err := e.SetCgroups(map[string]string{cgA: "prod/a"}); err == nil {
		t.Error("SetCgroups before Apply: no error")
	}
	if err := e.Apply(cgroupView()); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCgroups(map[string]string{cgA: "prod/a", cgB: "prod/nope"}); !errors.Is(err, ErrUnknownWorkload) {
		t.Errorf("SetCgroups with an unknown workload: %v, want ErrUnknownWorkload", err)
	}
	if err := e.SetCgroups(map[string]string{root + "/../": "prod/a"}); err == nil {
		t.Error("SetCgroups with a directory outside cgroup v2: no error")
	}
	if err := e.SetCgroups(map[string]string{cgA: "prod/a", cgB: "prod/b"}); err != nil {
		t.Fatal(err)
	}
	if err := e.AttachCgroup(""); err != nil {
		t.Fatalf("AttachCgroup: %v", err)
	}
	if err := e.AttachCgroup(root); err != nil {
		t.Fatalf("AttachCgroup again: %v", err)
	}
	if err := e.AttachCgroup(base); err == nil {
		t.Error("AttachCgroup on another cgroup with links pinned: no error")
	}

	tests := []struct {
		name, cgroup string
		want         helperResult
	}{
		{"prod/a", cgA, helperResult{tcpErr: "ok", tcpLocal: cgAIP, udpErr: "EPERM", udpSrc: "none"}},
		{"prod/b", cgB, helperResult{tcpErr: "EPERM", tcpLocal: cgBIP, udpErr: "ok", udpSrc: cgBIP}},
		// Not a workload: the kernel picks the source (the destination
		// itself, as it is local) and nothing is refused.
		{"no workload", "", helperResult{tcpErr: "ok", tcpLocal: cgDstIP, udpErr: "ok", udpSrc: cgDstIP}},
	}
	for _, tt := range tests {
		if got := runHelper(t, tt.cgroup); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}

	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if n := c.ByReason[ReasonConnectDenied]; n != 2 {
		t.Errorf("connect-denied counted %d times, want 2", n)
	}
	var denied []enforce.Event
	timeout := time.After(5 * time.Second)
	for len(denied) < 2 {
		select {
		case ev := <-e.Events():
			if ev.Reason == ReasonConnectDenied.String() {
				ev.Time = time.Time{}
				denied = append(denied, ev)
			}
		case <-timeout:
			t.Fatalf("connect-denied events: got %d, want 2", len(denied))
		}
	}
	wantEv := map[string]enforce.Event{
		"prod/b": {Src: view.MustAddr(cgBIP), Dst: view.MustAddr(cgDstIP), DstPort: 80, Protocol: protoTCP,
			Direction: enforce.Egress, Verdict: enforce.Dropped, Reason: ReasonConnectDenied.String(), Workload: "prod/b", RemoteIdentity: 900},
		"prod/a": {Src: view.MustAddr(cgAIP), Dst: view.MustAddr(cgDstIP), DstPort: 53, Protocol: protoUDP,
			Direction: enforce.Egress, Verdict: enforce.Dropped, Reason: ReasonConnectDenied.String(), Workload: "prod/a", RemoteIdentity: 900},
	}
	for _, ev := range denied {
		if ev != wantEv[ev.Workload] {
			t.Errorf("event %+v, want %+v", ev, wantEv[ev.Workload])
		}
	}

	// prod/b in monitor mode: the connect its rules deny proceeds and is
	// reported as would-deny.
	mv := cgroupView()
	mv.Version = 2
	mv.Workloads[1].Monitor = true
	if err := e.Apply(mv); err != nil {
		t.Fatal(err)
	}
	if got, want := runHelper(t, cgB), (helperResult{tcpErr: "ok", tcpLocal: cgBIP, udpErr: "ok", udpSrc: cgBIP}); got != want {
		t.Errorf("prod/b in monitor mode: got %+v, want %+v", got, want)
	}
	timeout = time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-e.Events():
			found = ev.Reason == ReasonConnectDenied.String() && ev.Verdict == enforce.WouldDeny && ev.Workload == "prod/b" && ev.DstPort == 80
			if ev.Reason == ReasonConnectDenied.String() && ev.Verdict == enforce.Dropped {
				t.Fatalf("monitor mode refused a connect: %+v", ev)
			}
		case <-timeout:
			t.Fatal("no would-deny connect event for prod/b in monitor mode")
		}
	}
	if c, err := e.Counters(); err != nil || c.ByReason[ReasonConnectDenied] != 2 || c.ByReason[ReasonMonitor] == 0 {
		t.Errorf("counters after the monitor-mode connect: %+v %v; want connect-denied still 2 and monitor > 0", c, err)
	}
	back := cgroupView()
	back.Version = 3
	if err := e.Apply(back); err != nil {
		t.Fatal(err)
	}

	e2, err := Load(e.pinDir)
	if err != nil {
		t.Fatalf("Load adopting links: %v", err)
	}
	if e2.links[linkConnect4] == nil || e2.links[linkSendmsg4] == nil || e2.links[linkBind4] == nil {
		t.Error("pinned cgroup links not adopted")
	}
	e2.Close()
	e.Close()
	// Links pinned: still enforced with no Enforcer open.
	if got := runHelper(t, cgB); got.tcpErr != "EPERM" {
		t.Errorf("prod/b after Close: connect %s, want EPERM", got.tcpErr)
	}
	if err := Remove(e.pinDir); err != nil {
		t.Fatal(err)
	}
	want := helperResult{tcpErr: "ok", tcpLocal: cgDstIP, udpErr: "ok", udpSrc: cgDstIP}
	if got := runHelper(t, cgB); got != want {
		t.Errorf("prod/b after Remove: got %+v, want %+v", got, want)
	}
}
