package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maxDump bounds how much of a process's output goes into the test log when
// the test fails; the whole output stays in Proc.LogPath until cleanup.
const maxDump = 64 << 10

// ErrRunning is returned by Proc.Wait when the process has not exited in
// time.
var ErrRunning = errors.New("process still running")

// Proc is a process started in a host by Host.Start. Its standard output and
// error go to one log file; it is killed at cleanup if it still runs.
type Proc struct {
	// Pid is the process id of argv[0] (`ip netns exec` execs it in place).
	Pid int
	// LogPath is the file holding the process's stdout and stderr; it lives
	// under t.TempDir() and is removed at cleanup.
	LogPath string

	name string // for messages: host and argv
	proc *os.Process
	done chan struct{} // closed once the process is reaped
	err  error         // Wait's result; set before done is closed
}

// Start runs argv in the host's namespace with env added to the test
// process's environment, its output captured to a log file under
// t.TempDir(). At cleanup the process gets SIGTERM, then SIGKILL after a
// grace period, and is reaped; if the test failed, the tail of its output
// is written to the test log. Processes it forked are killed when the lab
// deletes the namespace.
func (h *Host) Start(t testing.TB, env []string, argv ...string) *Proc {
	t.Helper()
	if len(argv) == 0 {
		t.Fatalf("netlab: %s: Start without a command", h.Name)
	}
	dir := t.TempDir() // before t.Cleanup below, so the file outlives the dump
	f, err := os.CreateTemp(dir, filepath.Base(argv[0])+"-*.log")
	if err != nil {
		t.Fatalf("netlab: %s: log file: %v", h.Name, err)
	}
	defer f.Close() // the child has its own copy

	cmd := h.Command(context.Background(), argv...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: %s: starting %s: %v", h.Name, strings.Join(argv, " "), err)
	}
	p := &Proc{
		Pid:     cmd.Process.Pid,
		LogPath: f.Name(),
		name:    h.Name + ": " + strings.Join(argv, " "),
		proc:    cmd.Process,
		done:    make(chan struct{}),
	}
	l := h.lab
	l.leaks.Process(p.Pid, p.name)
	l.mu.Lock()
	l.procs[p] = struct{}{}
	l.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		l.mu.Lock()
		delete(l.procs, p)
		l.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("netlab: %v", err)
		}
		if t.Failed() {
			status := "still running"
			if isDone(p.done) {
				status = fmt.Sprintf("exit: %v", p.err)
			}
			t.Logf("netlab: output of %s (pid %d, %s):\n%s", p.name, p.Pid, status, p.tail(maxDump))
		}
	})
	return p
}

// Kill sends sig to the process (not to its children).
func (p *Proc) Kill(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("%s: already exited: %v", p.name, p.err)
	default:
	}
	if err := p.proc.Signal(sig); err != nil {
		return fmt.Errorf("%s: kill %v: %w", p.name, sig, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0), or an error wrapping ErrRunning.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return fmt.Errorf("%s (pid %d): %w after %v", p.name, p.Pid, ErrRunning, timeout)
	}
}

// Done returns a channel closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output returns everything the process has written to stdout and stderr so
// far. It is empty once the test's cleanup has removed the log.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// tail returns the last n bytes of the output.
func (p *Proc) tail(n int64) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	defer f.Close()
	prefix := ""
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err == nil {
			prefix = fmt.Sprintf("(first %d bytes cut)\n", fi.Size()-n)
		}
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return prefix + string(b)
}

// stop ends the process: SIGTERM, then SIGKILL after killGrace, and waits
// for it to be reaped. It signals through os.Process (a pidfd), never a bare
// pid, so it cannot hit a recycled pid; children the process left behind are
// killed when the lab deletes the namespace. It is idempotent.
func (p *Proc) stop() error {
	if isDone(p.done) {
		return nil
	}
	_ = p.proc.Signal(syscall.SIGTERM)
	if err := p.Wait(killGrace); !errors.Is(err, ErrRunning) {
		return nil
	}
	_ = p.proc.Kill()
	if err := p.Wait(killGrace); errors.Is(err, ErrRunning) {
		return fmt.Errorf("%s (pid %d) survived SIGKILL: %w", p.name, p.Pid, err)
	}
	return nil
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
