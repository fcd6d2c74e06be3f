// Package recent remembers the last keys added to a set of bounded size, as
// 64-bit hashes in a ring and a map: about a tenth of the memory of the keys
// themselves, with a chance of a false match of about size/2⁶⁴ per lookup.
// The Manager's messageId dedup window and BigQuery's rows already landed
// are such sets.
package recent

import (
	"hash/maphash"
	"sync"
)

// Set holds the last Size keys added; adding one more forgets the oldest. It
// is safe for concurrent use.
type Set struct {
	mu   sync.Mutex
	seed maphash.Seed
	slot map[uint64]int // hash → its place in ring
	ring []uint64       // 0 marks a free place
	next int
}

// New returns a Set of the last size keys; size must be positive.
func New(size int) *Set {
	return &Set{seed: maphash.MakeSeed(), slot: make(map[uint64]int, size), ring: make([]uint64, size)}
}

// hash never returns 0, which marks a free place in the ring.
func (s *Set) hash(key string) uint64 { return maphash.String(s.seed, key) | 1 }

// Has reports whether key is in the set.
func (s *Set) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.slot[s.hash(key)]
	return ok
}

// Add adds key and reports whether it was not there before.
func (s *Set) Add(key string) bool {
	h := s.hash(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.slot[h]; ok {
		return false
	}
	if old := s.ring[s.next]; old != 0 && s.slot[old] == s.next {
		delete(s.slot, old)
	}
	s.ring[s.next] = h
	s.slot[h] = s.next
	s.next = (s.next + 1) % len(s.ring)
	return true
}

// Remove forgets key, if it is there.
func (s *Set) Remove(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range keys {
		h := s.hash(key)
		if i, ok := s.slot[h]; ok {
			delete(s.slot, h)
			s.ring[i] = 0
		}
	}
}

// Len returns how many keys the set holds.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.slot)
}
