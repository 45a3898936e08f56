package netlab

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LeakGrace is how long a Leaks check waits for leftovers to go away (a
// killed process to be reaped, a namespace to be released) before it
// reports them.
const LeakGrace = 10 * time.Second

// Where the host keeps what a latch node makes outside its namespace: the
// UAPI sockets of wireguard-go and the eBPF enforcer's default pins.
const (
	WireGuardSocketDir = "/var/run/wireguard"
	BPFPinRoot         = "/sys/fs/bpf/latch"
)

// Leaks checks at the end of a test that nothing a harness made remains:
// processes (by pid, the process itself), network namespaces and the
// processes in them, links, BPF pins, WireGuard UAPI sockets, cgroups,
// mounts and temporary directories. A harness registers what it makes, or
// a pattern its names follow, as it goes; the check runs in the t.Cleanup
// registered by CheckLeaks, so it runs after every cleanup registered
// later (LIFO): make the Leaks first, then start things. Each lab has one
// (Lab.Leaks), which watches everything named with the lab's suffix and
// runs after the lab is torn down.
//
// Watched entries are snapshotted when registered and compared at the
// end: only what is new is reported, so what other tests on the machine
// own is not. Everything left is reported in one t.Errorf, one line each.
type Leaks struct {
	t testing.TB

	mu     sync.Mutex
	probes []*probe   // must hold mu
	held   []*os.File // namespaces held open until the check ends; must hold mu
}

// probe lists the current entries of one kind of thing; before holds those
// present when it was registered (nil for things that must simply be gone).
type probe struct {
	kind   string
	list   func() ([]string, error)
	before map[string]bool
}

// CheckLeaks returns an empty Leaks whose check runs at t's cleanup.
func CheckLeaks(t testing.TB) *Leaks {
	k := &Leaks{t: t}
	t.Cleanup(k.check)
	return k
}

// Watch snapshots list now; at the end, entries that list returns and the
// snapshot lacks are reported as left-behind things of kind. list must be
// quick and bounded; an error it returns is reported too.
func (k *Leaks) Watch(kind string, list func() ([]string, error)) {
	before := map[string]bool{}
	cur, err := list()
	if err != nil {
		k.t.Errorf("netlab: leak check: listing %ss: %v", kind, err)
	}
	for _, e := range cur {
		before[e] = true
	}
	k.add(&probe{kind: kind, list: list, before: before})
}

// Gone registers something that must not exist at the end: list returns
// it (or its parts) while it exists.
func (k *Leaks) Gone(kind string, list func() ([]string, error)) {
	k.add(&probe{kind: kind, list: list})
}

func (k *Leaks) add(p *probe) {
	k.mu.Lock()
	k.probes = append(k.probes, p)
	k.mu.Unlock()
}

// Glob watches the files matching pattern (filepath.Glob).
func (k *Leaks) Glob(kind, pattern string) {
	k.Watch(kind, func() ([]string, error) { return filepath.Glob(pattern) })
}

// Path registers a file or directory that must be gone at the end: a
// temporary directory, a cgroup, a socket.
func (k *Leaks) Path(kind, path string) {
	k.Gone(kind, func() ([]string, error) {
		if _, err := os.Lstat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, err
		}
		return []string{path}, nil
	})
}

// Tree watches everything under dir, recursively: a BPF pin directory, a
// cgroup parent. dir itself is not reported; it need not exist.
func (k *Leaks) Tree(kind, dir string) {
	k.Watch(kind, func() ([]string, error) {
		var out []string
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if p != dir {
				out = append(out, p)
			}
			return nil
		})
		return out, err
	})
}

// Mount registers a mount point that must be unmounted at the end.
func (k *Leaks) Mount(path string) {
	k.Gone("mount", func() ([]string, error) {
		mounts, err := mountPoints()
		if err != nil {
			return nil, err
		}
		if slices.Contains(mounts, filepath.Clean(path)) {
			return []string{path}, nil
		}
		return nil, nil
	})
}

// Process registers a running process that must have exited, and been
// reaped, at the end. Give the pid of the process itself, not of a shell
// that started it. what names it in the report. A later process that
// reuses the pid is not mistaken for it.
func (k *Leaks) Process(pid int, what string) {
	start, err := procStart(pid)
	if err != nil {
		k.t.Errorf("netlab: leak check: process %d (%s): %v", pid, what, err)
		return
	}
	k.Gone("process", func() ([]string, error) {
		if s, err := procStart(pid); err == nil && s == start {
			return []string{fmt.Sprintf("pid %d %s (%s)", pid, procState(pid), what)}, nil
		}
		return nil, nil
	})
}

// Namespace registers a named network namespace (ip netns) that exists
// now: at the end its name must be gone and no process may be left in it,
// even after the name was deleted (such a process keeps the namespace and
// everything in it alive).
//
// The namespace is held open until the check ends, so that its inode
// number, by which its processes are found, is not given to another
// namespace meanwhile.
func (k *Leaks) Namespace(name string) {
	path := filepath.Join("/run/netns", name)
	f, err := os.Open(path)
	if err != nil {
		k.t.Errorf("netlab: leak check: namespace %s: %v", name, err)
		return
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		k.t.Errorf("netlab: leak check: namespace %s: %v", name, err)
		return
	}
	k.mu.Lock()
	k.held = append(k.held, f)
	k.mu.Unlock()
	k.Path("network namespace", path)
	k.Gone("process", func() ([]string, error) { return procsInNetNS(st.Ino) })
}

// RootLinks watches the links of the test's own network namespace whose
// name contains substr.
func (k *Leaks) RootLinks(substr string) {
	k.Watch("link", func() ([]string, error) {
		ifs, err := os.ReadDir("/sys/class/net")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range ifs {
			if strings.Contains(e.Name(), substr) {
				out = append(out, e.Name()+" (in the root network namespace)")
			}
		}
		return out, nil
	})
}

// Leftovers lists, once and without waiting, what is left now: one line
// per thing, "kind: what".
func (k *Leaks) Leftovers() []string {
	k.mu.Lock()
	probes := slices.Clone(k.probes)
	k.mu.Unlock()
	var out []string
	for _, p := range probes {
		cur, err := p.list()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: cannot list: %v", p.kind, err))
		}
		for _, e := range cur {
			if !p.before[e] {
				out = append(out, p.kind+": "+e)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// check waits up to LeakGrace for Leftovers to be empty and reports what
// remains, then lets go of the namespaces it held.
func (k *Leaks) check() {
	defer func() {
		k.mu.Lock()
		for _, f := range k.held {
			f.Close()
		}
		k.held = nil
		k.mu.Unlock()
	}()
	deadline := time.Now().Add(LeakGrace)
	interval := minPollInterval
	for {
		left := k.Leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			k.t.Errorf("netlab: the test left %d things behind (after %v):\n\t%s", len(left), LeakGrace, strings.Join(left, "\n\t"))
			return
		}
		time.Sleep(interval)
		interval = min(2*interval, maxPollInterval)
	}
}

// procStart returns the start time of pid (field 22 of /proc/PID/stat, in
// clock ticks since boot), which tells a process from a later one with the
// same pid.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, state
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// procState describes pid for a report: its state and command line.
func procState(pid int) string {
	dir := "/proc/" + strconv.Itoa(pid)
	raw, _ := os.ReadFile(dir + "/cmdline")
	cmd := strings.Join(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), " ")
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return "(zombie, not reaped)"
		}
	}
	if cmd == "" {
		return "(no command line)"
	}
	return "running " + strconv.Quote(cmd)
}

// procsInNetNS lists the processes whose network namespace has inode ino,
// but not this test process.
func procsInNetNS(ino uint64) ([]string, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("net:[%d]", ino)
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && l == want {
			out = append(out, fmt.Sprintf("pid %d %s (in network namespace %s)", pid, procState(pid), want))
		}
	}
	return out, nil
}

// mountPoints lists the mount points of this process's mount namespace.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fl := strings.Fields(sc.Text()); len(fl) > 4 {
			out = append(out, unescapeMount(fl[4]))
		}
	}
	return out, sc.Err()
}

// cgroup2Root returns where the cgroup v2 hierarchy is mounted in this
// process's mount namespace, or "".
func cgroup2Root() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		fl := strings.Fields(sc.Text())
		if i := slices.Index(fl, "-"); i > 4 && i+1 < len(fl) && fl[i+1] == "cgroup2" && fl[3] == "/" {
			return unescapeMount(fl[4])
		}
	}
	return ""
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo (\040 for
// a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
