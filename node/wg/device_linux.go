//go:build linux

package wg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// socketDir is where wireguard-go puts UAPI sockets (ipc.sockPath).
const socketDir = "/var/run/wireguard"

// linuxDevice is a WireGuard interface driven through wgctrl, backed by the
// kernel module or by an embedded wireguard-go device.
type linuxDevice struct {
	name string
	impl Impl
	pub  wgtypes.Key
	log  *slog.Logger

	addr   netip.Prefix   // Config.Address; set once by Open
	port   int            // set once by Open
	client *wgctrl.Client // set once by Open

	// wireguard-go only; nil for the kernel implementation.
	wgdev *wgdevice.Device
	uapi  net.Listener
	bind  *stunBind // wireguard-go's socket, with STUN on the side

	mu     sync.Mutex // serialises Apply, Peers and Close
	closed bool       // must hold mu
}

// Open brings up the WireGuard interface cfg describes: a kernel WireGuard
// link when the module can be loaded, wireguard-go on a TUN device
// otherwise. It sets the private key and listen port through wgctrl, adds
// cfg.Address and cfg.Route, sets the link up, and reports which
// implementation it chose. The device starts with no peers. On error
// nothing is left behind.
func Open(cfg Config, log *slog.Logger) (Device, Impl, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, "", err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(logIface, cfg.Name)

	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return nil, "", fmt.Errorf("opening WireGuard interface %s: %w: remove it (ip link del %s) or choose another name",
			cfg.Name, ErrExists, cfg.Name)
	} else if !isNotFound(err) {
		return nil, "", fmt.Errorf("opening WireGuard interface %s: looking up link: %w", cfg.Name, err)
	}

	d := &linuxDevice{name: cfg.Name, pub: cfg.PrivateKey.PublicKey(), log: log, addr: cfg.Address.Masked()}
	if err := d.open(cfg); err != nil {
		if cerr := d.teardown(); cerr != nil {
			log.Warn("cleaning up after failed open", logErr, cerr)
		}
		return nil, "", fmt.Errorf("opening WireGuard interface %s: %w", cfg.Name, err)
	}
	log.Info("WireGuard interface up", logImpl, string(d.impl), logPort, d.port)
	return d, d.impl, nil
}

// open does Open's work; on error the caller tears down what was made.
func (d *linuxDevice) open(cfg Config) error {
	err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: cfg.Name, MTU: cfg.MTU}})
	switch {
	case err == nil:
		d.impl = Kernel
		if cfg.Filter != nil {
			return fmt.Errorf("%w: the userspace enforcer would see no packet", ErrFilterNeedsUserspace)
		}
	case errors.Is(err, unix.EOPNOTSUPP):
		d.log.Info("kernel WireGuard not available, using wireguard-go", logErr, err)
		d.impl = Userspace
		if err := d.startUserspace(cfg); err != nil {
			return fmt.Errorf("wireguard-go (kernel WireGuard is not available): %w", err)
		}
	default:
		return fmt.Errorf("creating kernel WireGuard link: %w", err)
	}

	// Create the client only now: it looks for the kernel's generic netlink
	// family when it starts, and LinkAdd may just have loaded the module.
	d.client, err = wgctrl.New()
	if err != nil {
		return fmt.Errorf("opening wgctrl: %w", err)
	}
	port := cfg.ListenPort
	if err := d.client.ConfigureDevice(cfg.Name, wgtypes.Config{
		PrivateKey:   &cfg.PrivateKey,
		ListenPort:   &port,
		ReplacePeers: true,
	}); err != nil {
		return fmt.Errorf("setting private key and listen port: %w", err)
	}

	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("looking up link: %w", err)
	}
	addr := prefixIPNet(cfg.Address)
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: &addr}); err != nil {
		return fmt.Errorf("adding address %s: %w", cfg.Address, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting link up: %w", err)
	}
	if d.wgdev != nil {
		// The TUN reports the link going up asynchronously; bring the
		// device up now so its UDP port is bound before we read it.
		if err := d.wgdev.Up(); err != nil {
			return fmt.Errorf("starting wireguard-go: %w", err)
		}
	}
	if cfg.Route.IsValid() {
		dst := prefixIPNet(cfg.Route)
		if err := netlink.RouteReplace(&netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &dst,
			Scope:     netlink.SCOPE_LINK,
			Src:       net.IP(cfg.Address.Addr().AsSlice()),
		}); err != nil {
			return fmt.Errorf("adding route %s: %w", cfg.Route, err)
		}
	}

	dev, err := d.client.Device(cfg.Name)
	if err != nil {
		return fmt.Errorf("reading device: %w", err)
	}
	d.port = dev.ListenPort
	return nil
}

// startUserspace creates the TUN device, the wireguard-go device on it and
// the UAPI socket wgctrl talks to.
func (d *linuxDevice) startUserspace(cfg Config) error {
	tdev, err := tun.CreateTUN(cfg.Name, cfg.MTU)
	if err != nil {
		return fmt.Errorf("creating TUN device (is /dev/net/tun present and are we root?): %w", err)
	}
	if cfg.Filter != nil {
		tdev = &filterTUN{Device: tdev, f: cfg.Filter}
	}
	d.bind = newSTUNBind(conn.NewDefaultBind())
	d.wgdev = wgdevice.NewDevice(tdev, d.bind, &wgdevice.Logger{
		Verbosef: func(format string, args ...any) { d.log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { d.log.Error(fmt.Sprintf(format, args...)) },
	})

	file, err := ipc.UAPIOpen(cfg.Name)
	if err != nil {
		return fmt.Errorf("opening UAPI socket in %s: %w", socketDir, err)
	}
	uapi, err := ipc.UAPIListen(cfg.Name, file)
	file.Close() // UAPIListen holds its own copy of the descriptor
	if err != nil {
		return fmt.Errorf("listening on UAPI socket: %w", err)
	}
	d.uapi = uapi
	go d.serveUAPI(uapi, d.wgdev)
	return nil
}

// serveUAPI hands each UAPI connection to wireguard-go until the listener
// is closed or its socket file is removed.
func (d *linuxDevice) serveUAPI(l net.Listener, dev *wgdevice.Device) {
	for {
		c, err := l.Accept()
		if err != nil {
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if !closed {
				d.log.Warn("UAPI socket stopped; the device can no longer be configured", logErr, err)
			}
			return
		}
		go dev.IpcHandle(c)
	}
}

// Apply implements Device.
func (d *linuxDevice) Apply(peers []Peer) error {
	if err := checkPeers(peers, d.pub); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	dev, err := d.client.Device(d.name)
	if err != nil {
		return fmt.Errorf("reading peers of %s: %w", d.name, err)
	}
	cfg, changed := Plan(dev.Peers, peers)
	if !changed {
		return nil
	}
	held := holdKeepalives(dev.Peers, &cfg, d.pub)
	if err := d.client.ConfigureDevice(d.name, cfg); err != nil {
		return fmt.Errorf("configuring peers of %s: %w", d.name, err)
	}
	d.log.Debug("applied peers", logPeers, len(cfg.Peers))
	if len(held) > 0 {
		time.AfterFunc(releaseAfter(), func() { d.release(held) })
	}
	return nil
}

// release sets the keepalives holdKeepalives held back (see keepalive_hold.go).
func (d *linuxDevice) release(held map[wgtypes.Key]time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	dev, err := d.client.Device(d.name)
	if err != nil {
		d.log.Warn("reading peers to set their keepalives", logErr, err)
		return
	}
	cfg, ok := releaseKeepalives(dev.Peers, held)
	if !ok {
		return
	}
	if err := d.client.ConfigureDevice(d.name, cfg); err != nil {
		d.log.Warn("setting the keepalives of new peers", logErr, err)
	}
}

// SetAddresses implements Device.
func (d *linuxDevice) SetAddresses(extra []netip.Prefix) error {
	if err := checkAddrs(extra); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("looking up link %s: %w", d.name, err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", d.name, err)
	}
	current := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		if p, ok := ipNetPrefix(a.IPNet); ok {
			current = append(current, p)
		}
	}
	add, del := PlanAddrs(current, d.addr, extra)
	for _, p := range add {
		n := prefixIPNet(p)
		if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: &n}); err != nil {
			return fmt.Errorf("adding address %s to %s: %w", p, d.name, err)
		}
	}
	for _, p := range del {
		n := prefixIPNet(p)
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: &n}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("removing address %s from %s: %w", p, d.name, err)
		}
	}
	if len(add)+len(del) > 0 {
		d.log.Info("interface addresses set", logAdded, len(add), logRemoved, len(del))
	}
	return nil
}

// ipNetPrefix converts a netlink address to a prefix.
func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// Peers implements Device.
func (d *linuxDevice) Peers() ([]PeerStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	dev, err := d.client.Device(d.name)
	if err != nil {
		return nil, fmt.Errorf("reading peers of %s: %w", d.name, err)
	}
	out := make([]PeerStatus, 0, len(dev.Peers))
	for _, p := range dev.Peers {
		out = append(out, status(p))
	}
	return out, nil
}

// Reflexive implements Reflector: with wireguard-go it asks from the
// WireGuard socket; kernel WireGuard owns its socket, so it cannot.
func (d *linuxDevice) Reflexive(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	if d.bind == nil {
		return netip.AddrPort{}, fmt.Errorf("%w: kernel WireGuard owns its socket", ErrNoReflexive)
	}
	return d.bind.Reflexive(ctx, server)
}

func (d *linuxDevice) Name() string           { return d.name }
func (d *linuxDevice) PublicKey() wgtypes.Key { return d.pub }
func (d *linuxDevice) ListenPort() int        { return d.port }

// Close implements Device. It is safe to call more than once.
func (d *linuxDevice) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	err := d.teardown()
	d.log.Info("WireGuard interface removed")
	return err
}

// teardown removes whatever open made. It must not hold d.mu: serveUAPI
// takes it when the listener closes.
func (d *linuxDevice) teardown() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()

	var errs []error
	if d.uapi != nil {
		if err := d.uapi.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("closing UAPI socket: %w", err))
		}
	}
	if d.wgdev != nil {
		d.wgdev.Close() // closes the TUN, which removes the interface
	}
	if d.client != nil {
		if err := d.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing wgctrl: %w", err))
		}
	}
	if link, err := netlink.LinkByName(d.name); err == nil {
		if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("deleting link %s: %w", d.name, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, fmt.Errorf("looking up link %s: %w", d.name, err))
	}
	if d.impl == Userspace {
		sock := filepath.Join(socketDir, d.name+".sock")
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", sock, err))
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
