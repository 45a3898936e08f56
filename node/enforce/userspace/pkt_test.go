package userspace

import (
	"encoding/binary"

	"github.com/latchnet/latch/view"
)

// Hand-built IPv4 packets for the tests. Checksums are left zero: the
// filter does not read them.

func ipv4(proto uint8, src, dst string, l4 []byte) []byte {
	b := make([]byte, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:6], 0x1234)
	b[8] = 64
	b[9] = proto
	s, d := view.MustAddr(src), view.MustAddr(dst)
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	copy(b[20:], l4)
	return b
}

func tcp(src, dst string, sport, dport uint16, flags uint8) []byte {
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4[0:2], sport)
	binary.BigEndian.PutUint16(l4[2:4], dport)
	l4[12] = 5 << 4
	l4[13] = flags
	return ipv4(protoTCP, src, dst, l4)
}

func syn(src, dst string, sport, dport uint16) []byte {
	return tcp(src, dst, sport, dport, tcpSYN)
}

func udp(src, dst string, sport, dport uint16) []byte {
	l4 := make([]byte, 12)
	binary.BigEndian.PutUint16(l4[0:2], sport)
	binary.BigEndian.PutUint16(l4[2:4], dport)
	binary.BigEndian.PutUint16(l4[4:6], 12)
	return ipv4(protoUDP, src, dst, l4)
}

func sctp(src, dst string, sport, dport uint16) []byte {
	l4 := make([]byte, 12)
	binary.BigEndian.PutUint16(l4[0:2], sport)
	binary.BigEndian.PutUint16(l4[2:4], dport)
	return ipv4(protoSCTP, src, dst, l4)
}

func icmpEcho(src, dst string, typ uint8, id uint16) []byte {
	l4 := make([]byte, 16)
	l4[0] = typ
	binary.BigEndian.PutUint16(l4[4:6], id)
	return ipv4(protoICMP, src, dst, l4)
}

// icmpError quotes the first 28 bytes of quoted.
func icmpError(src, dst string, typ uint8, quoted []byte) []byte {
	l4 := make([]byte, 8, 8+28)
	l4[0] = typ
	l4 = append(l4, quoted[:min(28, len(quoted))]...)
	return ipv4(protoICMP, src, dst, l4)
}

// fragment makes b a fragment: offset in 8-byte units, more fragments.
func fragment(b []byte, id uint16, offset uint16, more bool) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint16(b[4:6], id)
	v := offset & 0x1fff
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:8], v)
	if offset > 0 {
		// A later fragment carries payload, not a transport header.
		for i := 20; i < len(b); i++ {
			b[i] = 0xee
		}
	}
	return b
}
