package userspace

import (
	"encoding/binary"

	"github.com/latchnet/latch/view"
)

// IP protocol numbers the filter knows.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// ICMP types the filter reads.
const (
	icmpEchoReply       = 0
	icmpDestUnreachable = 3
	icmpSourceQuench    = 4
	icmpEchoRequest     = 8
	icmpTimeExceeded    = 11
	icmpParamProblem    = 12
)

// packet is what the filter reads of one IPv4 packet. Only parse sets it.
type packet struct {
	src, dst     view.Addr
	proto        uint8
	id           uint16 // IPv4 identification, for fragments
	moreFrags    bool   // MF set: this is a fragment (the first one if !later)
	later        bool   // fragment offset > 0: no transport header
	sport, dport uint16 // TCP, UDP, SCTP; the echo identifier for ICMP echo
	tcpFlags     uint8
	icmpType     uint8
	// inner is the quoted packet of an ICMP error (its IP header and at
	// least 8 bytes of transport header), or nil.
	inner []byte
	// length is the IPv4 total length.
	length uint16
}

// parse reads pkt, which must start with an IPv4 header. It never reads
// out of bounds; reasons other than reasonNone say why the packet cannot
// be judged. Bytes after the IPv4 total length are ignored.
func parse(pkt []byte) (packet, Reason) {
	var p packet
	if len(pkt) < 20 {
		if len(pkt) > 0 && pkt[0]>>4 == 6 {
			return p, ReasonNotIPv4
		}
		return p, ReasonMalformed
	}
	if pkt[0]>>4 != 4 {
		return p, ReasonNotIPv4
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < 20 || total < ihl || total > len(pkt) {
		return p, ReasonMalformed
	}
	pkt = pkt[:total]
	p.length = uint16(total)
	p.id = binary.BigEndian.Uint16(pkt[4:6])
	frag := binary.BigEndian.Uint16(pkt[6:8])
	p.moreFrags = frag&0x2000 != 0
	p.later = frag&0x1fff != 0
	p.proto = pkt[9]
	copy(p.src[:], pkt[12:16])
	copy(p.dst[:], pkt[16:20])
	if p.later {
		return p, reasonNone
	}
	l4 := pkt[ihl:]
	switch p.proto {
	case protoTCP:
		// A first fragment must carry the whole fixed TCP header, so that
		// no later fragment can rewrite the flags or ports (RFC 1858).
		if len(l4) < 20 {
			return p, ReasonMalformed
		}
		p.sport = binary.BigEndian.Uint16(l4[0:2])
		p.dport = binary.BigEndian.Uint16(l4[2:4])
		p.tcpFlags = l4[13]
	case protoUDP, protoSCTP:
		if len(l4) < 8 {
			return p, ReasonMalformed
		}
		p.sport = binary.BigEndian.Uint16(l4[0:2])
		p.dport = binary.BigEndian.Uint16(l4[2:4])
	case protoICMP:
		if len(l4) < 8 {
			return p, ReasonMalformed
		}
		p.icmpType = l4[0]
		switch p.icmpType {
		case icmpEchoRequest, icmpEchoReply:
			p.sport = binary.BigEndian.Uint16(l4[4:6])
		case icmpDestUnreachable, icmpSourceQuench, icmpTimeExceeded, icmpParamProblem:
			p.inner = l4[8:]
		}
	}
	return p, reasonNone
}

// parseInner reads the packet quoted by an ICMP error: an IPv4 header and
// the first 8 bytes of its transport header, which hold the ports of TCP,
// UDP and SCTP. ok is false unless it is a first (or only) fragment of one
// of those protocols with its ports present.
func parseInner(b []byte) (p packet, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return p, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl+8 {
		return p, false
	}
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return p, false
	}
	p.proto = b[9]
	if p.proto != protoTCP && p.proto != protoUDP && p.proto != protoSCTP {
		return p, false
	}
	copy(p.src[:], b[12:16])
	copy(p.dst[:], b[16:20])
	p.sport = binary.BigEndian.Uint16(b[ihl : ihl+2])
	p.dport = binary.BigEndian.Uint16(b[ihl+2 : ihl+4])
	return p, true
}
