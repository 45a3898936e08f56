package wg

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"golang.zx2c4.com/wireguard/conn"
)

// batchBind is a conn.Bind whose one receive function returns the queued
// batches, one per call, then net.ErrClosed.
type batchBind struct {
	conn.Bind
	batches [][][]byte
}

func (b *batchBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		if len(b.batches) == 0 {
			return 0, net.ErrClosed
		}
		batch := b.batches[0]
		b.batches = b.batches[1:]
		for i, p := range batch {
			sizes[i] = copy(packets[i], p)
			eps[i] = &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), uint16(i+1))}
		}
		return len(batch), nil
	}}, 51820, nil
}

func stunAnswer(t *testing.T, id [stun.TransactionIDSize]byte, mapped netip.AddrPort) []byte {
	t.Helper()
	m, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())}, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestSTUNBindTakesAnswersOutOfTheReceivePath(t *testing.T) {
	var id [stun.TransactionIDSize]byte
	copy(id[:], "0123456789ab")
	mapped := netip.MustParseAddrPort("198.18.1.1:40000")
	ans := stunAnswer(t, id, mapped)
	// WireGuard messages: type 1-4, three zero bytes, then random bytes;
	// this initiation even carries the STUN magic cookie.
	wgInit := make([]byte, 148)
	wgInit[0] = 1
	copy(wgInit[4:], []byte{0x21, 0x12, 0xa4, 0x42})
	wgData := make([]byte, 64)
	wgData[0] = 4
	inner := &batchBind{batches: [][][]byte{
		{ans},                 // only STUN: not passed on
		{wgInit, ans, wgData}, // STUN between two WireGuard packets
		{ans[:19], []byte{1}}, // a short packet is WireGuard's to judge
	}}
	b := newSTUNBind(inner)
	ch := make(chan netip.AddrPort, 1)
	b.pending[id] = ch
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	packets := make([][]byte, 3)
	for i := range packets {
		packets[i] = make([]byte, 1500)
	}
	sizes, eps := make([]int, 3), make([]conn.Endpoint, 3)

	n, err := fns[0](packets, sizes, eps)
	if err != nil || n != 2 {
		t.Fatalf("first call: %d packets, %v; want the 2 WireGuard packets of the second batch", n, err)
	}
	if packets[0][0] != 1 || sizes[0] != 148 || packets[1][0] != 4 || sizes[1] != 64 {
		t.Errorf("passed on %x (%d) and %x (%d); want the initiation and the data packet", packets[0][:4], sizes[0], packets[1][:4], sizes[1])
	}
	if eps[1].DstToString() != "198.18.0.9:3" {
		t.Errorf("data packet's endpoint %s, want the one it came with (198.18.0.9:3)", eps[1].DstToString())
	}
	if &packets[0][0] == &packets[1][0] || &packets[1][0] == &packets[2][0] {
		t.Error("two slots share a buffer")
	}
	select {
	case got := <-ch:
		if got != mapped {
			t.Errorf("answer %s, want %s", got, mapped)
		}
	default:
		t.Error("the STUN answer was not delivered")
	}
	if n, err := fns[0](packets, sizes, eps); n != 2 || err != nil {
		t.Errorf("third batch: %d, %v; want both packets passed on", n, err)
	}
	if _, err := fns[0](packets, sizes, eps); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after the batches: %v, want net.ErrClosed", err)
	}
}

// TestReflexiveOverLoopback asks a STUN responder on loopback through a
// real wireguard-go socket, which also receives a WireGuard-looking
// packet that must be passed on.
func TestReflexiveOverLoopback(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: buf[:n]}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			srv.WriteToUDPAddrPort([]byte{4, 0, 0, 0, 1, 2, 3, 4}, src) // WireGuard data, first
			res, _ := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: net.IPv4(203, 0, 113, 7), Port: 41641}, stun.Fingerprint)
			srv.WriteToUDPAddrPort(res.Raw, src)
		}
	}()

	b := newSTUNBind(conn.NewStdNetBind())
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan []byte, 16)
	for _, fn := range fns {
		go func() {
			bs := b.BatchSize()
			packets, sizes, eps := make([][]byte, bs), make([]int, bs), make([]conn.Endpoint, bs)
			for i := range packets {
				packets[i] = make([]byte, 1500)
			}
			for {
				n, err := fn(packets, sizes, eps)
				if err != nil {
					return
				}
				for i := range n {
					got <- append([]byte(nil), packets[i][:sizes[i]]...)
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ap, err := b.Reflexive(ctx, srv.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("203.0.113.7:41641"); ap != want {
		t.Errorf("Reflexive = %s, want %s", ap, want)
	}
	select {
	case p := <-got:
		if len(p) != 8 || p[0] != 4 {
			t.Errorf("wireguard-go got %x, want the data packet", p)
		}
	case <-ctx.Done():
		t.Error("the WireGuard packet was not passed on")
	}
	select {
	case p := <-got:
		t.Errorf("wireguard-go also got %x", p)
	default:
	}
}

func TestReflexiveGivesUpWithoutAnswer(t *testing.T) {
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	b := newSTUNBind(conn.NewStdNetBind())
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Reflexive(context.Background(), silent.LocalAddr().(*net.UDPAddr).AddrPort())
	if !errors.Is(err, ErrNoReflexive) {
		t.Fatalf("Reflexive = %v, want ErrNoReflexive", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) != 0 {
		t.Errorf("%d requests still pending", len(b.pending))
	}
}
