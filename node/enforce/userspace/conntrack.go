package userspace

import (
	"sync"
	"sync/atomic"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

// flowKey names a flow from the node's side: the local workload's address
// and port, the remote address and port, the IP protocol. Both directions
// of a connection have the same key. For fragment records lport holds the
// IPv4 identification and rport is zero.
type flowKey struct {
	local, remote view.Addr
	lport, rport  uint16
	proto         uint8
}

func (k *flowKey) hash() uint32 {
	h := uint64(k.local.Uint32())<<32 | uint64(k.remote.Uint32())
	h ^= (uint64(k.lport)<<16 | uint64(k.rport)) * 0x9e3779b97f4a7c15
	h ^= uint64(k.proto) << 56
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return uint32(h)
}

// flow is the state of one tracked flow.
type flow struct {
	dir      enforce.Direction // of the packet that opened it
	gen      uint64            // the ruleset generation that last allowed it
	expires  int64             // unix nanoseconds
	replied  bool              // a packet went the other way
	closing  bool              // TCP FIN or RST seen
	identity view.Identity
}

// slot is an entry of a shard's fixed array, linked in LRU order.
type slot struct {
	key        flowKey
	f          flow
	used       bool // key is in the shard's index
	prev, next int32
}

// shard is one part of the table, with its own lock and a fixed number of
// slots. The most recently used slot is at head; when the shard is full
// the least recently used one is reused.
type shard struct {
	mu    sync.Mutex
	idx   map[flowKey]int32 // must hold mu
	slots []slot            // must hold mu
	head  int32             // must hold mu; -1 when empty
	tail  int32             // must hold mu; -1 when empty
}

const nilSlot = -1

// table is a bounded connection-tracking table.
type table struct {
	shards  []shard
	max     int           // entries held at most
	evicted atomic.Uint64 // live or expired entries reused for another key
	created atomic.Uint64 // entries inserted for a key not in the table
}

const tableShards = 16

func newTable(max int) *table {
	per := max / tableShards
	if per < 1 {
		per = 1
	}
	t := &table{shards: make([]shard, tableShards), max: per * tableShards}
	for i := range t.shards {
		t.shards[i] = shard{idx: make(map[flowKey]int32, min(per, 1024)), slots: make([]slot, 0, per), head: nilSlot, tail: nilSlot}
	}
	return t
}

func (t *table) shard(k *flowKey) *shard { return &t.shards[k.hash()%tableShards] }

// insert records k with f, replacing any entry, evicting the least
// recently used entry of its shard when full.
func (t *table) insert(k flowKey, f flow) {
	s := t.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.idx[k]; ok {
		s.slots[i].f = f
		s.touch(i)
		return
	}
	t.created.Add(1)
	var i int32
	if len(s.slots) < cap(s.slots) {
		s.slots = append(s.slots, slot{})
		i = int32(len(s.slots) - 1)
	} else {
		i = s.tail
		if s.slots[i].used {
			delete(s.idx, s.slots[i].key)
			t.evicted.Add(1)
		}
		s.unlink(i)
	}
	s.slots[i] = slot{key: k, f: f, used: true, prev: nilSlot, next: nilSlot}
	s.idx[k] = i
	s.pushFront(i)
}

// capacity is the number of entries the table holds at most.
func (t *table) capacity() int { return t.max }

// len counts the entries, expired ones not yet reused included.
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.idx)
		s.mu.Unlock()
	}
	return n
}

// remove frees slot i. Must hold s.mu. The slot is moved to the tail so
// that it is reused first.
func (s *shard) remove(i int32) {
	delete(s.idx, s.slots[i].key)
	s.slots[i].used = false
	// A free slot stays in the list, at the tail, which insert reuses
	// first once the shard is full.
	s.unlink(i)
	s.pushBack(i)
}

// must hold s.mu
func (s *shard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

// must hold s.mu
func (s *shard) unlink(i int32) {
	e := &s.slots[i]
	if e.prev != nilSlot {
		s.slots[e.prev].next = e.next
	} else if s.head == i {
		s.head = e.next
	}
	if e.next != nilSlot {
		s.slots[e.next].prev = e.prev
	} else if s.tail == i {
		s.tail = e.prev
	}
	e.prev, e.next = nilSlot, nilSlot
}

// must hold s.mu
func (s *shard) pushFront(i int32) {
	e := &s.slots[i]
	e.prev, e.next = nilSlot, s.head
	if s.head != nilSlot {
		s.slots[s.head].prev = i
	}
	s.head = i
	if s.tail == nilSlot {
		s.tail = i
	}
}

// must hold s.mu
func (s *shard) pushBack(i int32) {
	e := &s.slots[i]
	e.prev, e.next = s.tail, nilSlot
	if s.tail != nilSlot {
		s.slots[s.tail].next = i
	}
	s.tail = i
	if s.head == nilSlot {
		s.head = i
	}
}

// find returns the slot of k's live entry; an expired entry is removed.
// Must hold s.mu.
func (s *shard) find(k flowKey, now int64) (int32, bool) {
	i, ok := s.idx[k]
	if !ok {
		return 0, false
	}
	if s.slots[i].f.expires <= now {
		s.remove(i)
		return 0, false
	}
	return i, true
}

// touchLive reports whether k has a live entry, and marks it used.
func (t *table) touchLive(k flowKey, now int64) bool {
	s := t.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.find(k, now)
	if ok {
		s.touch(i)
	}
	return ok
}
