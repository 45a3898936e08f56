package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder passes everything to the test it wraps but keeps the errors
// reported through it, so that a test can look at what a harness would
// have failed with.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprint(args...))
}

func (r *recorder) report() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

// TestLeaksReported runs a harness that leaves one thing of every kind
// behind, registered with its lab's leak check or named with the lab's
// suffix, and checks that the check reports each of them; then it removes
// them itself.
func TestLeaksReported(t *testing.T) {
	_ = New(t) // skip or fail like the other tests when not root
	rec := &recorder{}
	var undo []func() error
	t.Cleanup(func() {
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				t.Errorf("removing what the leaky harness left: %v", err)
			}
		}
	})
	// want is what the report must name, one per kind.
	var want []string
	t.Run("leaky harness", func(t *testing.T) {
		rec.TB = t
		lab := New(rec)
		suffix := lab.Suffix()
		k := lab.Leaks()
		a := lab.Host("a")

		// A process started outside the lab and never stopped.
		sleeper := exec.Command("sleep", "600")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error { sleeper.Process.Kill(); sleeper.Wait(); return nil })
		k.Process(sleeper.Process.Pid, "sleeper")
		want = append(want, fmt.Sprintf("process: pid %d running \"sleep 600\" (sleeper)", sleeper.Process.Pid))

		// A namespace never deleted, with a process in it; a process
		// that outlives the deletion of a lab host's namespace name.
		ns := "latch-leak-" + suffix
		if err := ip("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error { return deleteNS(ns) })
		k.Namespace(ns)
		want = append(want, "network namespace: /run/netns/"+ns)
		for _, h := range []string{ns, a.NS} {
			p := exec.Command("ip", "netns", "exec", h, "sleep", "601")
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			undo = append(undo, func() error { p.Process.Kill(); p.Wait(); return nil })
			want = append(want, fmt.Sprintf("process: pid %d running \"sleep 601\" (in network namespace", p.Process.Pid))
		}
		Eventually(t, 5*time.Second, func() error {
			for _, w := range want[len(want)-2:] {
				var pid int
				fmt.Sscanf(w, "process: pid %d", &pid)
				if st := procState(pid); st != `running "sleep 601"` { // not yet `ip netns exec ...`
					return fmt.Errorf("pid %d is %s, not yet sleep 601", pid, st)
				}
			}
			return nil
		})
		// The lab kills what it finds in a host's namespace when it
		// deletes it: hide this one from it by deleting the name first.
		if err := ip("netns", "delete", a.NS); err != nil {
			t.Fatal(err)
		}
		if err := ip("netns", "add", a.NS); err != nil { // for the lab's own deletion
			t.Fatal(err)
		}

		// A link in the root namespace (a veth pair, down, no address).
		link := "lk" + suffix
		if err := ip("link", "add", link, "type", "veth", "peer", "name", "lp"+suffix); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error { return ip("link", "delete", link) })
		want = append(want, "link: "+link+" (in the root network namespace)")

		// A WireGuard UAPI socket.
		madeWG := mkdirIfMissing(t, WireGuardSocketDir)
		sock := filepath.Join(WireGuardSocketDir, "lt"+suffix+".sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error {
			ln.Close() // removes the socket file
			return removeIf(madeWG, WireGuardSocketDir)
		})
		want = append(want, "WireGuard UAPI socket: "+sock)

		// A BPF pin directory.
		madePins := mkdirIfMissing(t, BPFPinRoot)
		pin := filepath.Join(BPFPinRoot, "lt"+suffix)
		if err := os.Mkdir(pin, 0o700); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error { return errors.Join(os.Remove(pin), removeIf(madePins, BPFPinRoot)) })
		want = append(want, "BPF pin: "+pin)

		// A temporary directory holding a cgroup2 mount and a cgroup,
		// none removed.
		tmp, err := os.MkdirTemp("", "netlab-leak-")
		if err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error { return os.RemoveAll(tmp) })
		k.Path("temporary directory", tmp)
		want = append(want, "temporary directory: "+tmp)
		if out, err := exec.Command("mount", "-t", "cgroup2", "none", tmp).CombinedOutput(); err != nil {
			t.Fatalf("mounting cgroup2: %v %s", err, out)
		}
		undo = append(undo, func() error { return exec.Command("umount", tmp).Run() })
		k.Mount(tmp)
		want = append(want, "mount: "+tmp)
		cg := filepath.Join(tmp, "latch-leak-"+suffix)
		if err := os.Mkdir(cg, 0o755); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() error { return os.Remove(cg) })
		k.Path("cgroup", cg)
		want = append(want, "cgroup: "+cg)

		if left := k.Leftovers(); len(left) < len(want) {
			t.Errorf("while the harness runs, Leftovers lists %d things, want at least %d:\n%s", len(left), len(want), strings.Join(left, "\n"))
		}
	})
	if t.Failed() {
		return
	}
	report := rec.report()
	if !strings.Contains(report, "netlab: the test left") {
		t.Fatalf("the leak check reported nothing; errors:\n%s", report)
	}
	t.Logf("the leak check reported:\n%s", report)
	for _, w := range want {
		if !strings.Contains(report, w) {
			t.Errorf("the report lacks %q:\n%s", w, report)
		}
	}
}

// mkdirIfMissing makes dir and says whether it did.
func mkdirIfMissing(t *testing.T, dir string) bool {
	t.Helper()
	if _, err := os.Stat(dir); err == nil {
		return false
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return true
}

// removeIf removes the directory dir if made is true and dir is empty.
func removeIf(made bool, dir string) error {
	if !made {
		return nil
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	return nil
}
