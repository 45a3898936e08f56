//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/latchnet/latch/bpf"
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

// Pin names of the links, by link index; maps are pinned under their own
// names.
const (
	pinIngress  = "link_ingress"
	pinEgress   = "link_egress"
	pinConnect4 = "link_connect4"
	pinSendmsg4 = "link_sendmsg4"
	pinBind4    = "link_bind4"
)

// Indexes of Enforcer.links: the TCX links by kernelDir (ingress, egress),
// then the cgroup links.
const (
	linkConnect4 = 2
	linkSendmsg4 = 3
	linkBind4    = 4
	numLinks     = 5
)

var linkPins = [numLinks]string{pinIngress, pinEgress, pinConnect4, pinSendmsg4, pinBind4}

// Connection-tracking timeouts written to the config map.
const (
	ctTimeoutTCP   = 6 * time.Hour
	ctTimeoutOther = 60 * time.Second
)

var _ enforce.Enforcer = (*Enforcer)(nil)

// Enforcer owns the loaded programs and pinned maps of one interface.
type Enforcer struct {
	pinDir string
	objs   bpf.LatchObjects

	mu    sync.Mutex
	links [numLinks]link.Link // by kernelDir, then linkConnect4, linkSendmsg4, linkBind4; guarded by mu
	// names are the workload names by rule set and index; guarded by mu.
	names [2][]string
	// addrs are the workload addresses by rule set and name; guarded by mu.
	addrs [2]map[string]view.Addr
	// active is the rule set of the last Apply, -1 before; version is
	// the version of its view. Guarded by mu.
	active  int
	version uint64
	// cgroups is the assignment of the last SetCgroups (cgroup path →
	// workload); guarded by mu.
	cgroups map[string]string

	reader  *ringbuf.Reader
	events  chan enforce.Event
	skipped atomic.Uint64
	done    chan struct{}
}

// Load loads the programs and maps, pinning the maps under pinDir
// (DefaultPinDir of the interface). Maps and links already pinned there are
// adopted: the rules in force stay in force and the links are switched to
// the newly loaded programs. It mounts bpffs on /sys/fs/bpf when missing.
func Load(pinDir string) (*Enforcer, error) {
	return load(pinDir, nil)
}

// load is Load with a hook that may change the collection spec before it
// is loaded (tests shrink maps with it).
func load(pinDir string, edit func(*ebpf.CollectionSpec)) (*Enforcer, error) {
	if pinDir == "" {
		return nil, errors.New("loading eBPF enforcer: empty pin directory")
	}
	if err := ensureBPFFS(pinDir); err != nil {
		return nil, fmt.Errorf("loading eBPF enforcer: %w", err)
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return nil, fmt.Errorf("loading eBPF enforcer: %w", err)
	}
	spec, err := bpf.LoadLatch()
	if err != nil {
		return nil, fmt.Errorf("loading eBPF enforcer: %w", err)
	}
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			m.Pinning = ebpf.PinByName
		}
	}
	if edit != nil {
		edit(spec)
	}
	e := &Enforcer{pinDir: pinDir, events: make(chan enforce.Event, 4096), done: make(chan struct{}), active: -1}
	err = spec.LoadAndAssign(&e.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("loading eBPF enforcer: maps pinned under %s come from an incompatible version (%w); remove them with `latch node --cleanup`", pinDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("loading eBPF enforcer: %w", err)
	}

	// Adopt pinned links: point them at the programs just loaded, which
	// use the same (pinned) maps.
	for i, name := range linkPins {
		path := filepath.Join(pinDir, name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("loading eBPF enforcer: adopting %s: %w", path, err)
		}
		if err := l.Update(e.linkProgram(i)); err != nil {
			// The link's interface is gone (a wireguard-go TUN dies with
			// its agent): the link is severed. Drop it; AttachTCX attaches
			// afresh to the new interface.
			if uerr := l.Unpin(); uerr != nil {
				l.Close()
				e.Close()
				return nil, fmt.Errorf("loading eBPF enforcer: %s cannot be updated (%v) nor unpinned: %w", path, err, uerr)
			}
			l.Close()
			continue
		}
		e.links[i] = l
	}

	e.reader, err = ringbuf.NewReader(e.objs.Events)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("loading eBPF enforcer: opening ring buffer: %w", err)
	}
	go e.readEvents()
	return e, nil
}

// linkProgram is the program of e.links[i].
func (e *Enforcer) linkProgram(i int) *ebpf.Program {
	switch i {
	case linkConnect4:
		return e.objs.LatchConnect4
	case linkSendmsg4:
		return e.objs.LatchSendmsg4
	case linkBind4:
		return e.objs.LatchBind4
	}
	return e.program(directions[i])
}

func (e *Enforcer) program(d enforce.Direction) *ebpf.Program {
	if d == enforce.Ingress {
		return e.objs.LatchIngress
	}
	return e.objs.LatchEgress
}

// ensureBPFFS mounts bpffs on /sys/fs/bpf if pinDir is under it and it is
// not mounted (as in a fresh network namespace's mount namespace).
func ensureBPFFS(pinDir string) error {
	const root = "/sys/fs/bpf"
	if !strings.HasPrefix(filepath.Clean(pinDir)+"/", root+"/") {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("checking %s: %w", root, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs on %s: %w", root, err)
	}
	return nil
}

// AttachTCX attaches the programs at TCX ingress and egress of the
// interface and pins the links. Links adopted by Load are kept if they are
// on the same interface. Call Apply first: until then every packet from or
// to a workload address is dropped.
func (e *Enforcer) AttachTCX(ifindex int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.objs.LatchIngress == nil {
		return ErrNotLoaded
	}
	// The pin dir belongs to one interface name; a link on another index
	// is from an interface that was recreated (wireguard-go's TUN lives
	// and dies with the agent). Drop such links first, then attach.
	for dir, name := range [2]string{pinIngress, pinEgress} {
		l := e.links[dir]
		if l == nil {
			continue
		}
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("attaching %s: reading pinned link: %w", directions[dir], err)
		}
		if tcx := info.TCX(); tcx != nil && int(tcx.Ifindex) == ifindex {
			continue
		}
		if err := l.Unpin(); err != nil {
			return fmt.Errorf("attaching %s: unpinning the stale link %s: %w", directions[dir], filepath.Join(e.pinDir, name), err)
		}
		l.Close()
		e.links[dir] = nil
	}
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("attaching to interface %d: %w", ifindex, err)
	}
	if err := e.setL3Offset(linkHeaderLen(ifc)); err != nil {
		return fmt.Errorf("attaching to %s: %w", ifc.Name, err)
	}
	for dir, attach := range [2]ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		name := [2]string{pinIngress, pinEgress}[dir]
		if e.links[dir] != nil {
			continue
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: e.program(directions[dir]), Attach: attach})
		if err != nil {
			return fmt.Errorf("attaching %s to interface %d: %w", directions[dir], ifindex, err)
		}
		if err := l.Pin(filepath.Join(e.pinDir, name)); err != nil {
			l.Close()
			return fmt.Errorf("pinning %s link: %w", directions[dir], err)
		}
		e.links[dir] = l
	}
	return nil
}

// linkHeaderLen is the length of ifc's link header, where the programs find
// the IP header: none on a TUN or WireGuard device (no hardware address),
// 14 on Ethernet.
func linkHeaderLen(ifc *net.Interface) uint32 {
	if len(ifc.HardwareAddr) == 6 {
		return 14
	}
	return 0
}

// setL3Offset tells the programs where the IP header starts in the packet
// data they see; the caller holds e.mu.
func (e *Enforcer) setL3Offset(n uint32) error {
	var cfg bpf.LatchSettings
	if err := e.objs.Config.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	if cfg.L3Offset == n {
		return nil
	}
	cfg.L3Offset = n
	if err := e.objs.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// setMaps are the maps of one rule set.
type setMaps struct{ workloads, identities, rules, cidrs, sites *ebpf.Map }

func (e *Enforcer) set(i uint32) setMaps {
	if i == 0 {
		return setMaps{e.objs.WorkloadsA, e.objs.IdentitiesA, e.objs.RulesA, e.objs.CidrsA, e.objs.SitesA}
	}
	return setMaps{e.objs.WorkloadsB, e.objs.IdentitiesB, e.objs.RulesB, e.objs.CidrsB, e.objs.SitesB}
}

// Apply compiles v, writes it into the inactive rule set and then makes that
// set active with one write to the config map. Packets see either the old
// rules or the new ones, never a mix. A flow tracked before the switch is
// decided again by the new rules at its next packet, as it was opened; if
// they deny it, that packet is dropped (ReasonRevoked) and the flow's
// entries are deleted, so its later packets are decided as new ones (a TCP
// packet without SYN is then dropped as ReasonNotSYN). In monitor mode the
// flow passes, reported as would-deny.
func (e *Enforcer) Apply(v *view.View) error {
	t, err := Compile(v)
	if err != nil {
		return fmt.Errorf("applying view %d: %w", v.Version, err)
	}
	entries := encode(t)

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.objs.Config == nil {
		return ErrNotLoaded
	}
	var cfg bpf.LatchSettings
	if err := e.objs.Config.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("applying view %d: reading config: %w", v.Version, err)
	}
	next := (cfg.Active + 1) & 1
	m := e.set(next)
	for _, s := range []struct {
		name string
		m    *ebpf.Map
		kv   map[any]any
	}{
		{"workloads", m.workloads, entries.workloads},
		{"identities", m.identities, entries.identities},
		{"rules", m.rules, entries.rules},
		{"cidrs", m.cidrs, entries.cidrs},
		{"sites", m.sites, entries.sites},
	} {
		if err := replace(s.m, s.kv); err != nil {
			return fmt.Errorf("applying view %d: filling %s: %w", v.Version, s.name, err)
		}
	}
	cfg.Active = next
	cfg.Generation++
	cfg.CtTimeoutTcpNs = uint64(ctTimeoutTCP)
	cfg.CtTimeoutOtherNs = uint64(ctTimeoutOther)
	if err := e.objs.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("applying view %d: switching rule sets: %w", v.Version, err)
	}
	e.names[next] = t.Names()
	e.addrs[next] = make(map[string]view.Addr, len(t.Workloads))
	for _, w := range t.Workloads {
		e.addrs[next][w.Name] = w.Addr
	}
	e.active = int(next)
	e.version = v.Version
	if e.cgroups != nil {
		// Workloads that left the view lose their cgroup entry (their
		// sockets are then left to latch_egress).
		known := make(map[string]string, len(e.cgroups))
		for path, wl := range e.cgroups {
			if _, ok := e.addrs[next][wl]; ok {
				known[path] = wl
			}
		}
		if err := e.writeCgroups(known); err != nil {
			return fmt.Errorf("applying view %d: %w", v.Version, err)
		}
	}
	return nil
}

// SetCgroups says which cgroup v2 directory holds which local workload of
// the applied view (path → "namespace/name"), replacing the previous
// assignment: sockets in those cgroups that connect or send into the
// overlay get the workload's address as source and are refused (EPERM)
// when its egress rules deny the destination. A cgroup's descendants are
// not included; list each cgroup whose processes open sockets. Call it
// after Apply; later Applys keep it current. An empty or nil map clears it.
func (e *Enforcer) SetCgroups(cgroups map[string]string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.objs.Cgroups == nil {
		return ErrNotLoaded
	}
	if len(cgroups) > 0 && e.active < 0 {
		return errors.New("setting cgroups: no view applied yet: call Apply first")
	}
	if err := e.writeCgroups(cgroups); err != nil {
		return err
	}
	e.cgroups = maps.Clone(cgroups)
	return nil
}

// writeCgroups resolves cgroups against the active rule set and makes the
// cgroups map hold exactly them. Must hold e.mu.
func (e *Enforcer) writeCgroups(cgroups map[string]string) error {
	var addrs map[string]view.Addr
	if e.active >= 0 {
		addrs = e.addrs[e.active]
	}
	ids, err := resolveCgroups(cgroups, addrs, cgroupID)
	if err != nil {
		return fmt.Errorf("setting cgroups: %w", err)
	}
	if len(ids) > MaxCgroups {
		return fmt.Errorf("setting cgroups: %w: %d cgroups, at most %d", ErrTooLarge, len(ids), MaxCgroups)
	}
	kv := make(map[any]any, len(ids))
	owners := make(map[any]any, len(ids))
	for id, a := range ids {
		kv[id] = bpf.LatchCgroupWorkload{Addr: be32(a)}
		owners[be32(a)] = id
	}
	// Owners first: an address is never unowned while a cgroup holds it.
	if err := replace(e.objs.Owners, owners); err != nil {
		return fmt.Errorf("setting cgroups: filling owners map: %w", err)
	}
	if err := replace(e.objs.Cgroups, kv); err != nil {
		return fmt.Errorf("setting cgroups: filling cgroups map: %w", err)
	}
	return nil
}

// cgroupID is the id bpf_get_current_cgroup_id returns for processes in
// the cgroup v2 directory path: its inode number.
func cgroupID(path string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, err
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, errors.New("not a directory of the cgroup v2 hierarchy")
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, errors.New("not a cgroup directory")
	}
	return st.Ino, nil
}

// CgroupRoot returns the mount point of the cgroup v2 hierarchy
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems), read from
// /proc/mounts.
func CgroupRoot() (string, error) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "", fmt.Errorf("finding the cgroup v2 root: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			return f[1], nil
		}
	}
	return "", errors.New("finding the cgroup v2 root: no cgroup2 file system in /proc/mounts: mount one (mount -t cgroup2 none /sys/fs/cgroup)")
}

// NetnsCookie returns the cookie of the calling thread's network
// namespace, as bpf_get_netns_cookie reports it (SO_NETNS_COOKIE, Linux
// 5.14).
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("reading the network namespace cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("reading the network namespace cookie (SO_NETNS_COOKIE needs Linux 5.14): %w", err)
	}
	return c, nil
}

// setNetns makes the cgroup programs guard overlay addresses in the
// network namespace with the given cookie (0: nowhere). Must hold e.mu.
func (e *Enforcer) setNetns(cookie uint64) error {
	if err := e.objs.Scope.Put(uint32(0), bpf.LatchHost{NetnsCookie: cookie}); err != nil {
		return fmt.Errorf("writing the scope map: %w", err)
	}
	return nil
}

// AttachCgroup attaches the connect4, sendmsg4 and bind4 programs to the
// cgroup v2 directory root (empty: CgroupRoot) and pins the links. Links
// adopted by Load are kept if they are on the same cgroup. The programs
// guard the overlay addresses of workloads with a cgroup (see SetCgroups)
// in the caller's network namespace only, so that agents in other
// namespaces, attached to the same cgroups, are left alone.
func (e *Enforcer) AttachCgroup(root string) error {
	if root == "" {
		r, err := CgroupRoot()
		if err != nil {
			return err
		}
		root = r
	}
	id, err := cgroupID(root)
	if err != nil {
		return fmt.Errorf("attaching to cgroup %s: %w", root, err)
	}
	cookie, err := NetnsCookie()
	if err != nil {
		return fmt.Errorf("attaching to cgroup %s: %w", root, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.objs.LatchConnect4 == nil {
		return ErrNotLoaded
	}
	if err := e.setNetns(cookie); err != nil {
		return fmt.Errorf("attaching to cgroup %s: %w", root, err)
	}
	for _, h := range []struct {
		i      int
		attach ebpf.AttachType
	}{{linkConnect4, ebpf.AttachCGroupInet4Connect}, {linkSendmsg4, ebpf.AttachCGroupUDP4Sendmsg}, {linkBind4, ebpf.AttachCGroupInet4Bind}} {
		name := linkPins[h.i]
		if l := e.links[h.i]; l != nil {
			info, err := l.Info()
			if err != nil {
				return fmt.Errorf("attaching %s: reading pinned link: %w", name, err)
			}
			if cg := info.Cgroup(); cg != nil && cg.CgroupId == id {
				continue
			}
			return fmt.Errorf("attaching %s: %s pins a link on another cgroup; remove it with `latch node --cleanup`", name, filepath.Join(e.pinDir, name))
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: h.attach, Program: e.linkProgram(h.i)})
		if err != nil {
			return fmt.Errorf("attaching %s to cgroup %s: %w", name, root, err)
		}
		if err := l.Pin(filepath.Join(e.pinDir, name)); err != nil {
			l.Close()
			return fmt.Errorf("pinning %s link: %w", name, err)
		}
		e.links[h.i] = l
	}
	return nil
}

// replace makes m hold exactly kv: stale keys are deleted, then every
// entry is written. Must only be called on the inactive set.
func replace(m *ebpf.Map, kv map[any]any) error {
	// Keys are read with the map's own key type, so compare by bytes.
	want := make(map[string]bool, len(kv))
	for k := range kv {
		b, err := binaryOf(k)
		if err != nil {
			return err
		}
		want[string(b)] = true
	}
	var stale [][]byte
	it := m.Iterate()
	var k []byte
	var v []byte
	for it.Next(&k, &v) {
		if !want[string(k)] {
			stale = append(stale, slicesClone(k))
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	for k, v := range kv {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("writing %+v: %w", k, err)
		}
	}
	return nil
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

func binaryOf(v any) ([]byte, error) {
	b, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", v, err)
	}
	return b, nil
}

// entries are a Tables in the generated key and value types.
type entries struct{ workloads, identities, rules, cidrs, sites map[any]any }

// be32 returns the uint32 whose memory holds a in network order.
func be32(a view.Addr) uint32 { return binary.NativeEndian.Uint32(a[:]) }

func addrOf(u uint32) view.Addr {
	var a view.Addr
	binary.NativeEndian.PutUint32(a[:], u)
	return a
}

func encodePorts(s PortSet) bpf.LatchPorts {
	var p bpf.LatchPorts
	p.Count = s.N
	for i := range s.Ranges {
		p.R[i].First, p.R[i].Last = s.Ranges[i].First, s.Ranges[i].Last
	}
	return p
}

func encode(t *Tables) entries {
	en := entries{
		workloads:  make(map[any]any, len(t.Workloads)),
		identities: make(map[any]any, len(t.Identities)),
		rules:      make(map[any]any, len(t.Rules)),
		cidrs:      make(map[any]any, len(t.CIDRs)),
		sites:      make(map[any]any, len(t.Sites)),
	}
	b2u := func(b bool) uint8 {
		if b {
			return 1
		}
		return 0
	}
	for _, w := range t.Workloads {
		v := bpf.LatchWorkload{Index: w.Index, Identity: uint32(w.Identity)}
		v.AllowAll = [2]uint8{b2u(w.AllowAll[0]), b2u(w.AllowAll[1])}
		v.Monitor = b2u(w.Monitor)
		en.workloads[be32(w.Addr)] = v
	}
	for _, s := range t.Sites {
		v := bpf.LatchWorkload{Index: s.Index}
		v.AllowAll = [2]uint8{b2u(s.AllowAll[0]), b2u(s.AllowAll[1])}
		v.Monitor = b2u(s.Monitor)
		en.sites[bpf.LatchIdentKey{Prefixlen: uint32(s.Prefix.Bits), Addr: be32(s.Prefix.Addr)}] = v
	}
	for _, i := range t.Identities {
		en.identities[bpf.LatchIdentKey{Prefixlen: 32, Addr: be32(i.Addr)}] = uint32(i.Identity)
	}
	for _, r := range t.Rules {
		k := bpf.LatchRuleKey{Workload: r.Workload, Identity: uint32(r.Identity), Dir: kernelDir(r.Dir), Proto: r.Proto}
		en.rules[k] = encodePorts(r.Ports)
	}
	for _, c := range t.CIDRs {
		k := bpf.LatchCidrKey{Prefixlen: 64 + uint32(c.Prefix.Bits), Workload: c.Workload, Dir: kernelDir(c.Dir), Proto: c.Proto, Addr: be32(c.Prefix.Addr)}
		en.cidrs[k] = encodePorts(c.Ports)
	}
	return en
}

// Events returns the flow events: drops and new allowed flows. The channel
// is closed by Close. When it is full, events are counted in
// Counters.EventsSkipped and discarded.
func (e *Enforcer) Events() <-chan enforce.Event { return e.events }

// eventPoll is how often the event reader looks at the ring buffer when the
// programs have not woken it (they do only when 1/16 of it is waiting).
const eventPoll = 100 * time.Millisecond

func (e *Enforcer) readEvents() {
	defer close(e.done)
	defer close(e.events)
	var rec ringbuf.Record
	for {
		// The programs wake the reader only when much is waiting; the
		// deadline bounds how late a lone event is read.
		e.reader.SetDeadline(time.Now().Add(eventPoll))
		if err := e.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			continue
		}
		var raw bpf.LatchEvent
		if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &raw); err != nil {
			continue
		}
		ev := e.decode(&raw)
		select {
		case e.events <- ev:
		default:
			e.skipped.Add(1)
		}
	}
}

func (e *Enforcer) decode(r *bpf.LatchEvent) enforce.Event {
	ev := enforce.Event{
		Time:           monoToTime(r.TimeNs),
		Src:            addrOf(r.Saddr),
		Dst:            addrOf(r.Daddr),
		SrcPort:        r.Sport,
		DstPort:        r.Dport,
		Protocol:       r.Proto,
		Direction:      directionOf(r.Dir),
		Verdict:        verdictOf(r.Verdict),
		Reason:         Reason(r.Reason).String(),
		RemoteIdentity: view.Identity(r.RemoteIdentity),
		Bytes:          r.Len,
	}
	e.mu.Lock()
	if names := e.names[r.Set&1]; int64(r.Workload) < int64(len(names)) {
		ev.Workload = names[r.Workload]
	}
	e.mu.Unlock()
	return ev
}

// monoToTime converts a bpf_ktime_get_ns (CLOCK_MONOTONIC) stamp.
func monoToTime(ns uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(uint64(ts.Nano()) - ns))
}

// Counters sums the per-CPU counters.
func (e *Enforcer) Counters() (Counters, error) {
	e.mu.Lock()
	m := e.objs.Counters
	e.mu.Unlock()
	if m == nil {
		return Counters{}, ErrNotLoaded
	}
	e.mu.Lock()
	stats, ct := e.objs.Stats, e.objs.Conntrack
	e.mu.Unlock()
	c := Counters{ByReason: make(map[Reason]uint64), EventsSkipped: e.skipped.Load(), ConntrackCapacity: ct.MaxEntries()}
	for _, s := range []struct {
		stat bpf.LatchStat
		n    *uint64
	}{
		{bpf.LatchStatSTAT_CT_CREATED, &c.ConntrackCreated},
		{bpf.LatchStatSTAT_CT_RECREATED, &c.ConntrackRecreated},
		{bpf.LatchStatSTAT_CT_MISS, &c.ConntrackMisses},
		{bpf.LatchStatSTAT_BIND_REFUSED, &c.BindsRefused},
		{bpf.LatchStatSTAT_SOURCE_REFUSED, &c.SourcesRefused},
	} {
		var per []uint64
		if err := stats.Lookup(uint32(s.stat), &per); err != nil {
			return Counters{}, fmt.Errorf("reading stat %d: %w", s.stat, err)
		}
		for _, n := range per {
			*s.n += n
		}
	}
	for r := Reason(0); r < numReasons; r++ {
		var per []uint64
		if err := m.Lookup(uint32(r), &per); err != nil {
			return Counters{}, fmt.Errorf("reading counter %s: %w", r, err)
		}
		var sum uint64
		for _, n := range per {
			sum += n
		}
		switch {
		case r == ReasonEventLost:
			c.EventsLost = sum
			continue
		case r.Verdict() == enforce.Allowed:
			c.Allowed += sum
		default:
			c.Dropped += sum
		}
		if sum > 0 {
			c.ByReason[r] = sum
		}
	}
	return c, nil
}

// Stats returns the counters (Counters) in the form both enforcers share,
// with the version of the view applied last.
func (e *Enforcer) Stats() (enforce.Stats, error) {
	c, err := e.Counters()
	if err != nil {
		return enforce.Stats{}, err
	}
	e.mu.Lock()
	version := e.version
	e.mu.Unlock()
	return c.stats(version), nil
}

// Close releases the programs, maps and links held by this process. Pinned
// maps and links stay: enforcement continues until Remove.
func (e *Enforcer) Close() error {
	if e.reader != nil {
		e.reader.Close()
		<-e.done
		e.reader = nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for i, l := range e.links {
		if l != nil {
			errs = append(errs, l.Close())
			e.links[i] = nil
		}
	}
	errs = append(errs, e.objs.Close())
	e.objs = bpf.LatchObjects{}
	return errors.Join(errs...)
}

// Remove detaches the programs and deletes the maps pinned under pinDir by
// removing the pins and the directory (`latch node --cleanup`). The links
// are detached even if an Enforcer still holds them. A missing pinDir is
// not an error.
func Remove(pinDir string) error {
	spec, err := bpf.LoadLatch()
	if err != nil {
		return fmt.Errorf("removing eBPF pins: %w", err)
	}
	var errs []error
	// Detach first, so that the programs are gone when Remove returns even
	// if another process still holds the link.
	for _, n := range linkPins {
		path := filepath.Join(pinDir, n)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			errs = append(errs, fmt.Errorf("detaching %s: %w", path, err))
		}
		l.Close()
	}
	names := append([]string(nil), linkPins[:]...)
	for name := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(pinDir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("%w (files not made by latch are left there)", err))
	}
	if filepath.Dir(filepath.Clean(pinDir)) == PinRoot {
		os.Remove(PinRoot) // only if empty
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing eBPF pins: %w", err)
	}
	return nil
}
