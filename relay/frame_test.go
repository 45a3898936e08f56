package relay

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		peer   string
		packet []byte
	}{
		{"node-b", []byte("packet")},
		{"node-b", nil},
		{strings.Repeat("n", MaxName), bytes.Repeat([]byte{1}, MaxPacket)},
	} {
		f, err := EncodeFrame(tc.peer, tc.packet)
		if err != nil {
			t.Fatalf("encode %q: %v", tc.peer, err)
		}
		if len(f) != 1+len(tc.peer)+len(tc.packet) || len(f) > MaxFrame {
			t.Fatalf("frame of %d bytes for a %d-byte name and a %d-byte packet", len(f), len(tc.peer), len(tc.packet))
		}
		peer, packet, err := DecodeFrame(f)
		if err != nil || peer != tc.peer || !bytes.Equal(packet, tc.packet) {
			t.Fatalf("decode: %q %d bytes %v, want %q %d bytes", peer, len(packet), err, tc.peer, len(tc.packet))
		}
	}
}

func TestFrameErrors(t *testing.T) {
	if _, err := EncodeFrame(strings.Repeat("n", MaxName+1), nil); !errors.Is(err, ErrBadFrame) {
		t.Errorf("encode with a long name: %v", err)
	}
	if _, err := EncodeFrame("b", make([]byte, MaxPacket+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encode with a long packet: %v", err)
	}
	for _, f := range [][]byte{nil, {5, 'a', 'b'}} {
		if _, _, err := DecodeFrame(f); !errors.Is(err, ErrBadFrame) {
			t.Errorf("decode %v: %v, want ErrBadFrame", f, err)
		}
	}
	if _, _, err := DecodeFrame(append([]byte{0}, make([]byte, MaxPacket+1)...)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("decode a long packet: %v, want ErrTooLarge", err)
	}
}

func TestDialRefusesBadArguments(t *testing.T) {
	if _, err := Dial(t.Context(), "http://127.0.0.1:1", &tls.Config{}, DialOptions{}); err == nil || !strings.Contains(err.Error(), "want https://") {
		t.Errorf("dial over plain HTTP: %v", err)
	}
	if _, err := Dial(t.Context(), "https://127.0.0.1:1", nil, DialOptions{}); err == nil || !strings.Contains(err.Error(), "no TLS configuration") {
		t.Errorf("dial without a TLS configuration: %v", err)
	}
}
