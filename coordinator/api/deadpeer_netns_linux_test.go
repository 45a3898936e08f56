package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/wire"
	"golang.org/x/sys/unix"
)

// skipOrFail skips the test, or fails it when CI=true: CI runs as root
// with every kernel feature and must not skip.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs f on an OS thread inside the named network namespace, so
// that the sockets f creates live there.
func inNetns(name string, f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it ends with the goroutine.
		return fmt.Errorf("leaving netns %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// TestDeadPeerEndsStream: a node whose host goes silent (its link goes
// down: no FIN, no RST) while its view stream is open is noticed by the
// coordinator's listener, set up as the coordinator sets it up: the
// stream ends and the node is offline. The coordinator and the node are
// in two network namespaces the test creates, joined by a veth pair
// (198.18.250.0/30).
func TestDeadPeerEndsStream(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "needs the ip command: %v", err)
	}
	h := newHarness(t)
	nsA, nsB := fmt.Sprintf("latch-dp-%d-a", os.Getpid()), fmt.Sprintf("latch-dp-%d-b", os.Getpid())
	for _, ns := range []string{nsA, nsB} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			exec.Command("ip", "netns", "del", ns).Run()
			if _, err := os.Stat("/run/netns/" + ns); err == nil {
				t.Errorf("netns %s is still there", ns)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", nsA, "link", "add", "dpa", "type", "veth", "peer", "name", "dpb", "netns", nsB)
	ipCmd(t, "-n", nsA, "addr", "add", "198.18.250.1/30", "dev", "dpa")
	ipCmd(t, "-n", nsB, "addr", "add", "198.18.250.2/30", "dev", "dpb")
	ipCmd(t, "-n", nsA, "link", "set", "dpa", "up")
	ipCmd(t, "-n", nsB, "link", "set", "dpb", "up")

	svid, err := h.CA.ServerSVID([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := inNetns(nsA, func() error {
		var err error
		ln, err = h.API.Listen("198.18.250.1:0", api.TLSConfig(h.CA, svid))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hs := h.API.HTTPServer(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})

	gw := h.MustEnroll(h.Token(1), "gw-1")
	cfg := gw.HTTP.Transport.(*http.Transport).TLSClientConfig.Clone()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(nsB, func() error {
				var err error
				c, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+ln.Addr().String()+wire.PathStream, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	if !bufio.NewScanner(resp.Body).Scan() {
		t.Fatal("the stream sent no view")
	}
	if !h.State.Online()["gw-1"] {
		t.Fatal("gw-1 is not online with its stream open")
	}
	// The node's host goes silent.
	ipCmd(t, "-n", nsB, "link", "set", "dpb", "down")
	deadline := time.Now().Add(30 * time.Second)
	for h.State.Online()["gw-1"] {
		if time.Now().After(deadline) {
			t.Fatal("gw-1 is still online 30 s after its host went silent")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
