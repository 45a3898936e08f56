package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
	"github.com/latchnet/latch/internal/syncbuf"
)

// demoNamespaces lists the network namespaces the demo names ld-*.
func demoNamespaces() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var ns []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "ld-") {
			ns = append(ns, f[0])
		}
	}
	return ns, nil
}

// demoProcesses lists the processes running bin or one of the demo's
// listeners (nc -lk on an overlay address), as "pid cmdline".
func demoProcesses(bin string) func() ([]string, error) {
	return func() ([]string, error) {
		dirs, err := os.ReadDir("/proc")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, d := range dirs {
			if _, err := strconv.Atoi(d.Name()); err != nil {
				continue
			}
			raw, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
			if err != nil || len(raw) == 0 {
				continue // gone, or a kernel thread
			}
			cmd := strings.Join(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), " ")
			if strings.HasPrefix(cmd, bin+" ") || strings.HasPrefix(cmd, "nc -lk 100.64.") {
				out = append(out, d.Name()+" "+cmd)
			}
		}
		return out, nil
	}
}

// TestDemo runs `make demo`'s script as `make demo` does (holding until
// it is stopped) and checks that every allowed flow connected, that the
// console answered through its relay while the demo held, and that a
// SIGTERM to the script alone (not its process group, as a supervisor or
// `kill PID` sends it) stops it promptly and leaves nothing behind: no
// process, namespace, WireGuard socket, pin or work directory.
func TestDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the demo needs root (network namespaces); CI runs as root")
		}
		t.Skip("the demo needs root (network namespaces)")
	}
	bin := binary(t)
	// What the demo makes: namespaces ld-<name>-<suffix>, WireGuard
	// interfaces ld<suffix><n> (wireguard-go's UAPI sockets, the eBPF
	// pins of a node outside a namespace), its work directory.
	leaks := netlab.CheckLeaks(t)
	leaks.Watch("network namespace", demoNamespaces)
	leaks.Watch("process", demoProcesses(bin))
	leaks.Glob("WireGuard UAPI socket", filepath.Join(netlab.WireGuardSocketDir, "ld*"))
	leaks.Glob("BPF pin", filepath.Join(netlab.BPFPinRoot, "ld*"))
	leaks.Glob("temporary directory", "/tmp/latch-demo.*")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./scripts/demo.sh")
	cmd.Dir = ".."
	// A free port for the console relay on this machine's loopback.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd.Env = append(os.Environ(), "BIN="+bin, "DEMO_HOLD=1", fmt.Sprintf("DEMO_CONSOLE_PORT=%d", port))
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The demo runs in its own process group. Past the deadline the whole
	// group gets SIGTERM, as Ctrl-C sends SIGINT to it, so that the
	// script's cleanup runs even if it ignores a signal to itself alone;
	// WaitDelay bounds the wait for the output of what it left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	const holding = "up; press Ctrl-C to stop and clean up"
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
wait:
	for !strings.Contains(out.String(), holding) {
		select {
		case err := <-done:
			t.Fatalf("the demo ended before holding: %v\n%s", err, out.String())
		case <-poll.C:
		case <-ctx.Done():
			break wait
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the demo did not come up in time:\n%s", out.String())
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err != nil {
		t.Errorf("the console relay does not answer while the demo holds: %v", err)
	} else {
		c.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A shell runs its trap only when its foreground command ends, so a
	// hold loop around a long sleep would keep everything running until
	// the deadline, when CommandContext kills the script alone.
	stop := time.NewTimer(time.Minute)
	defer stop.Stop()
	select {
	case <-done:
	case <-stop.C:
		t.Errorf("the demo did not stop within a minute of a SIGTERM to the script")
		cancel()
		<-done
	}
	text := out.String()
	for _, want := range []string{fmt.Sprintf("web console: https://127.0.0.1:%d/console/ (user admin, password ", port), "connectivity matrix", "laptop  open (allow)", "allowed flows that did not connect: 0", "denied flows that connected: 0", "-- web"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Errorf("the demo left its console relay listening on 127.0.0.1:%d", port)
	}
}
