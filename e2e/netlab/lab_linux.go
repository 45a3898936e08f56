package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Timeouts of the lab's own work. A test that needs other bounds passes its
// own context to Host.Run or its own timeout to Host.DialTCP.
const (
	// ipTimeout bounds one `ip` invocation made while building or tearing
	// down the lab.
	ipTimeout = 10 * time.Second
	// RunTimeout bounds Host.Run when the caller's context has no earlier
	// deadline.
	RunTimeout = 30 * time.Second
	// killGrace is how long a process gets between SIGTERM and SIGKILL at
	// cleanup, and then again after SIGKILL before the lab reports a leak.
	killGrace = 5 * time.Second
	// waitDelay bounds how long exec waits for a killed command's output
	// pipes to close (a grandchild may hold them open).
	waitDelay = 2 * time.Second
)

// HostLink is the name of every host's underlay interface inside its own
// namespace.
const HostLink = "eth0"

// nsPrefix starts the name of every namespace a lab creates, so leftovers of
// a killed test binary are easy to find: ip netns list | grep ^latch-.
const nsPrefix = "latch-"

// DefaultUnderlay is the underlay prefix of a lab made without WithUnderlay.
var DefaultUnderlay = netip.MustParsePrefix("198.18.0.0/24")

// testUnderlay is where every lab underlay must lie (the test networks of
// DESIGN.md).
var testUnderlay = netip.MustParsePrefix("198.18.0.0/15")

// hostName is what Lab.Host accepts as a host name: short, so that the
// namespace name stays readable, and safe in a file name.
var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// Lab is one throwaway test network: a bridge in a private hub namespace and
// the hosts attached to it. Make one with New. Its methods are safe for
// concurrent use, but Host and the helpers that take a testing.TB fail the
// test with t.Fatal, so call them from the test's goroutine.
type Lab struct {
	t      testing.TB
	suffix string
	prefix netip.Prefix
	hub    string // hub namespace
	bridge string // bridge link inside hub
	leaks  *Leaks

	mu        sync.Mutex
	next      netip.Addr              // next free underlay address; must hold mu
	hosts     map[string]*Host        // by Host.Name; must hold mu
	sites     []*Site                 // by index; must hold mu
	nss       []string                // namespaces to delete, hub first; must hold mu
	procs     map[*Proc]struct{}      // started and not yet reaped; must hold mu
	listeners map[net.Listener]func() // open ServeTCP listeners and their stop; must hold mu
}

// Option configures New.
type Option func(*config) error

type config struct {
	prefix netip.Prefix
}

// WithUnderlay sets the lab's underlay prefix. It must be an IPv4 prefix
// inside 198.18.0.0/15 with room for at least two hosts (/30 or shorter).
func WithUnderlay(p netip.Prefix) Option {
	return func(c *config) error {
		p = p.Masked()
		if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < testUnderlay.Bits() || !testUnderlay.Contains(p.Addr()) {
			return fmt.Errorf("underlay %v: want an IPv4 prefix between /%d and /30 inside %v", p, testUnderlay.Bits(), testUnderlay)
		}
		c.prefix = p
		return nil
	}
}

// New creates a lab: a hub namespace holding a bridge for the underlay, with
// nothing added to the host's root namespace. Everything the lab creates is
// removed by t.Cleanup. Without root it skips the test, saying that the test
// needs root, unless the CI environment variable is set, in which case it
// fails the test instead: CI runs as root and must not skip.
func New(t testing.TB, opts ...Option) *Lab {
	t.Helper()
	cfg := config{prefix: DefaultUnderlay}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			t.Fatalf("netlab: %v", err)
		}
	}
	if err := preflight(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("netlab: skipping, this test needs root: %v (CI is unset; with CI set this is a failure)", err)
		}
		t.Fatalf("netlab: this test needs root and CI is set, so it must not skip: %v", err)
	}

	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("netlab: random suffix: %v", err)
	}
	suffix := hex.EncodeToString(rnd[:])
	l := &Lab{
		t:         t,
		suffix:    suffix,
		prefix:    cfg.prefix,
		hub:       nsPrefix + "hub-" + suffix,
		bridge:    "lbr-" + suffix,
		next:      cfg.prefix.Addr().Next(),
		hosts:     map[string]*Host{},
		procs:     map[*Proc]struct{}{},
		listeners: map[net.Listener]func(){},
	}
	// The leak check first, so that it runs after the lab's cleanup and
	// after every cleanup registered later.
	l.leaks = CheckLeaks(t)
	l.leaks.RootLinks(suffix)
	l.leaks.Glob("WireGuard UAPI socket", filepath.Join(WireGuardSocketDir, "*"+suffix+"*"))
	l.leaks.Glob("BPF pin", filepath.Join(BPFPinRoot, "*"+suffix+"*"))
	if root := cgroup2Root(); root != "" {
		l.leaks.Glob("cgroup", filepath.Join(root, "*"+suffix+"*"))
	}
	t.Cleanup(l.cleanup)

	if err := l.addNS(l.hub); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	steps := [][]string{
		{"-n", l.hub, "link", "set", "lo", "up"},
		{"-n", l.hub, "link", "add", l.bridge, "type", "bridge"},
		{"-n", l.hub, "link", "set", l.bridge, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			t.Fatalf("netlab: building hub: %v", err)
		}
	}
	return l
}

// preflight reports why this process cannot build a lab, or nil.
func preflight() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("running as uid %d, network namespaces need root", uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2's ip not found (apt-get install iproute2): %w", err)
	}
	return nil
}

// Suffix returns the random suffix in every namespace and link name of the
// lab.
func (l *Lab) Suffix() string { return l.suffix }

// Leaks returns the lab's leak check, which runs after the lab is torn
// down. It already watches the lab's processes and namespaces, and the
// links in the root namespace, WireGuard UAPI sockets (WireGuardSocketDir),
// BPF pins (BPFPinRoot) and top-level cgroups whose names contain Suffix;
// harnesses add what else they make (temporary directories, pin
// directories, cgroups, mounts).
func (l *Lab) Leaks() *Leaks { return l.leaks }

// Underlay returns the lab's underlay prefix.
func (l *Lab) Underlay() netip.Prefix { return l.prefix }

// Host is one machine of the lab: a network namespace with loopback up and
// one underlay link, HostLink, holding the address Underlay. An agentless
// host of a site (Site.Host) has the site's link instead and no Underlay.
type Host struct {
	// Name is the name given to Lab.Host.
	Name string
	// NS is the network namespace's name, for `ip netns exec` and
	// netns.GetFromName: "latch-<name>-<suffix>".
	NS string
	// Link is the underlay interface inside NS (HostLink), or for a site
	// host its site link.
	Link string
	// Underlay is the host's address on the lab's underlay.
	Underlay netip.Addr

	lab *Lab
}

// Host adds a host: a namespace named after name plus the lab's suffix, a
// veth pair from it to the bridge, the next free underlay address, loopback
// up. name must match [a-z][a-z0-9-]{0,19}, must not be "hub", and must be
// new in this lab.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	l.checkHostName(name)
	l.mu.Lock()
	if _, dup := l.hosts[name]; dup {
		l.mu.Unlock()
		l.t.Fatalf("netlab: host %q added twice", name)
	}
	addr := l.next
	if !l.prefix.Contains(addr.Next()) { // keep the broadcast address free
		l.mu.Unlock()
		l.t.Fatalf("netlab: underlay %v is full, use WithUnderlay for a larger one", l.prefix)
	}
	l.next = addr.Next()
	h := &Host{Name: name, NS: nsPrefix + name + "-" + l.suffix, Link: HostLink, Underlay: addr, lab: l}
	index := len(l.hosts)
	l.hosts[name] = h
	l.mu.Unlock()

	if err := l.addNS(h.NS); err != nil {
		l.t.Fatalf("netlab: host %s: %v", name, err)
	}
	port := "h" + strconv.Itoa(index) + "-" + l.suffix // 15 bytes up to index 999
	steps := [][]string{
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", l.hub, "link", "add", port, "type", "veth", "peer", "name", HostLink, "netns", h.NS},
		{"-n", l.hub, "link", "set", port, "master", l.bridge, "up"},
		{"-n", h.NS, "addr", "add", netip.PrefixFrom(addr, l.prefix.Bits()).String(), "dev", HostLink},
		{"-n", h.NS, "link", "set", HostLink, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			l.t.Fatalf("netlab: host %s: %v", name, err)
		}
	}
	return h
}

// checkHostName fails the test unless name is one Host accepts.
func (l *Lab) checkHostName(name string) {
	l.t.Helper()
	if !hostName.MatchString(name) || name == "hub" {
		l.t.Fatalf("netlab: host name %q: want [a-z][a-z0-9-]{0,19}, not \"hub\"", name)
	}
}

// addNS creates the named network namespace and records it for cleanup.
func (l *Lab) addNS(name string) error {
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	l.leaks.Namespace(name)
	l.mu.Lock()
	l.nss = append(l.nss, name)
	l.mu.Unlock()
	return nil
}

// cleanup tears the lab down: processes, listeners, then namespaces (which
// takes their links and the bridge with them). It reports what it could not
// remove as test errors.
func (l *Lab) cleanup() {
	l.mu.Lock()
	procs := make([]*Proc, 0, len(l.procs))
	for p := range l.procs {
		procs = append(procs, p)
	}
	stops := make([]func(), 0, len(l.listeners))
	for _, stop := range l.listeners {
		stops = append(stops, stop)
	}
	nss := append([]string(nil), l.nss...)
	l.mu.Unlock()

	for _, p := range procs {
		if err := p.stop(); err != nil {
			l.t.Errorf("netlab: %v", err)
		}
	}
	for _, stop := range stops {
		stop()
	}
	// Delete hosts before the hub, newest first.
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNS(nss[i]); err != nil {
			l.t.Errorf("netlab: cleanup: %v", err)
		}
	}
}

// deleteNS kills whatever still runs in the namespace (a daemon's forked
// children, say: all of them were started by this lab) and deletes it.
func deleteNS(name string) error {
	var errs []error
	out, err := ipOutput("netns", "pids", name)
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing pid %d left in %s: %w", pid, name, err))
		}
	}
	if err := ip("netns", "delete", name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ip runs `ip args...` with a timeout.
func ip(args ...string) error {
	_, err := ipOutput(args...)
	return err
}

// ipOutput runs `ip args...` with a timeout and returns its standard output.
func ipOutput(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.WaitDelay = waitDelay
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Command returns a command that runs argv inside the host's namespace (via
// `ip netns exec`, which execs argv in place, so the command's pid is
// argv's). It is killed when ctx is done.
// The caller sets Env, Stdout and so on, and owns the process: use Start for
// one the lab kills at cleanup.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, argv...)...)
	cmd.WaitDelay = waitDelay
	return cmd
}

// Run runs argv to completion inside the host's namespace and returns its
// combined output. It stops the command after RunTimeout, or earlier when
// ctx is done. The error names the command and includes its output.
func (h *Host) Run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, RunTimeout)
	defer cancel()
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return string(out), fmt.Errorf("%s: %s: %w: %s", h.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Do runs fn on an OS thread switched into the host's namespace, for netlink
// calls or sockets made by the test process itself. Sockets fn creates stay
// in the namespace after Do returns and work from any goroutine. fn runs on
// its own goroutine, locked to its thread: goroutines that fn starts run in
// the test's namespace, not the host's. A panic in fn is re-raised in the
// caller.
func (h *Host) Do(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		val      any
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		defer func() {
			if v := recover(); v != nil {
				r.panicked, r.val = true, v
			}
		}()
		r.err = h.do(fn)
	}()
	r := <-done
	if r.panicked {
		panic(r.val)
	}
	return r.err
}

// do switches the calling goroutine's thread into the namespace, runs fn and
// switches back. If switching back fails, the thread stays locked, so the
// runtime ends it when the goroutine exits and nothing else runs on a thread
// in the wrong namespace.
func (h *Host) do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%s: current network namespace: %w", h.Name, err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(h.NS)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%s: opening namespace %s: %w", h.Name, h.NS, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread() // setns failed, so the thread is unchanged
		return fmt.Errorf("%s: entering namespace %s: %w", h.Name, h.NS, err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, fmt.Errorf("%s: leaving namespace %s: %w", h.Name, h.NS, rerr))
			return // stay locked: this thread must die with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// DialTCP opens a TCP connection from inside the host's namespace to addr
// and closes it, failing after timeout. It is the connectivity check: nil
// means a handshake completed.
func (h *Host) DialTCP(addr netip.AddrPort, timeout time.Duration) error {
	return h.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		return c.Close()
	})
}

// ServeTCP listens inside the host's namespace on addr and accepts and
// closes connections until cleanup. It returns once the listener is bound,
// with its address (useful when addr has port 0).
func (h *Host) ServeTCP(t testing.TB, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("netlab: %s: listening on %v: %v", h.Name, addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			c.Close()
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ln.Close()
			<-done
		})
	}
	l := h.lab
	l.mu.Lock()
	l.listeners[ln] = stop
	l.mu.Unlock()
	t.Cleanup(func() {
		stop()
		l.mu.Lock()
		delete(l.listeners, ln)
		l.mu.Unlock()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}
