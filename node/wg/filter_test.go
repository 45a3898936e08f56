package wg

import (
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/tun"
)

// batchTUN is a tun.Device that returns one fixed batch per Read and
// records what is written.
type batchTUN struct {
	reads   [][][]byte // batches still to return; an empty list ends with os.ErrClosed
	written [][]byte
}

var _ tun.Device = (*batchTUN)(nil)

func (b *batchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(b.reads) == 0 {
		return 0, os.ErrClosed
	}
	batch := b.reads[0]
	b.reads = b.reads[1:]
	for i, p := range batch {
		sizes[i] = copy(bufs[i][offset:], p)
	}
	return len(batch), nil
}

func (b *batchTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, p := range bufs {
		b.written = append(b.written, slices.Clone(p[offset:]))
	}
	return len(bufs), nil
}

func (b *batchTUN) File() *os.File           { return nil }
func (b *batchTUN) MTU() (int, error)        { return 1420, nil }
func (b *batchTUN) Name() (string, error)    { return "fake", nil }
func (b *batchTUN) Events() <-chan tun.Event { return nil }
func (b *batchTUN) Close() error             { return nil }
func (b *batchTUN) BatchSize() int           { return 8 }

// dropOdd lets through packets whose first byte is even.
type dropOdd struct{ out, in int }

func (d *dropOdd) Outbound(p []byte) bool { d.out++; return p[0]%2 == 0 }
func (d *dropOdd) Inbound(p []byte) bool  { d.in++; return p[0]%2 == 0 }

func TestFilterTUNRead(t *testing.T) {
	const offset = 16
	inner := &batchTUN{reads: [][][]byte{
		{{1, 'a'}, {2, 'b'}, {3, 'c'}, {4, 'd', 'd'}}, // compacted to 2, 4
		{{5}, {7}}, // all dropped: Read reads again
		{{6, 'e'}}, // kept
		{{9}},      // all dropped, then the device is closed
	}}
	f := &dropOdd{}
	dev := &filterTUN{Device: inner, f: f}
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	sizes := make([]int, 4)
	read := func() [][]byte {
		n, err := dev.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		var out [][]byte
		for i := range n {
			out = append(out, slices.Clone(bufs[i][offset:offset+sizes[i]]))
		}
		return out
	}
	if diff := cmp.Diff([][]byte{{2, 'b'}, {4, 'd', 'd'}}, read()); diff != "" {
		t.Errorf("first batch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]byte{{6, 'e'}}, read()); diff != "" {
		t.Errorf("second batch (-want +got):\n%s", diff)
	}
	if n, err := dev.Read(bufs, sizes, offset); n != 0 || err == nil {
		t.Errorf("Read after the last batch = %d, %v; want 0 and the device's error", n, err)
	}
	if f.out != 8 {
		t.Errorf("filter saw %d packets, want 8", f.out)
	}
}

func TestFilterTUNWrite(t *testing.T) {
	const offset = 16
	pkt := func(b ...byte) []byte { return append(make([]byte, offset), b...) }
	for _, tc := range []struct {
		name string
		in   [][]byte
		want [][]byte
	}{
		{"all pass", [][]byte{pkt(2), pkt(4, 4)}, [][]byte{{2}, {4, 4}}},
		{"some dropped", [][]byte{pkt(2), pkt(3), pkt(4), pkt(5), pkt(6)}, [][]byte{{2}, {4}, {6}}},
		{"first dropped", [][]byte{pkt(1), pkt(2)}, [][]byte{{2}}},
		{"all dropped", [][]byte{pkt(1), pkt(3)}, nil},
		{"empty packet dropped", [][]byte{pkt(), pkt(2)}, [][]byte{{2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &batchTUN{}
			dev := &filterTUN{Device: inner, f: &dropOdd{}}
			orig := slices.Clone(tc.in)
			n, err := dev.Write(tc.in, offset)
			if err != nil || n != len(tc.in) {
				t.Errorf("Write = %d, %v; want %d, nil", n, err, len(tc.in))
			}
			if diff := cmp.Diff(tc.want, inner.written); diff != "" {
				t.Errorf("written (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(orig, tc.in); diff != "" {
				t.Errorf("Write changed its argument (-before +after):\n%s", diff)
			}
		})
	}
}
