// Package memstore is the in-memory synkfs.Store: what `synkfs serve`
// keeps its records in when it runs without a data directory.
//
// Nothing survives the process. Each New store has a fresh random epoch,
// so replicas of a restarted server learn that its history was reset.
//
// Costs: Apply is O(k log n) for a batch of k changes; Since(v) is
// O(log n + changes since v); Scan is O(log n + limit); Get, Lookup and
// Count are O(1). Records are copied on the way in and on the way out, so
// callers never share memory with the store.
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/synkfs/synkfs"
)

// Store is an in-memory synkfs.Store. It is safe for concurrent use:
// readers run in parallel, Apply and Compact take the store exclusively.
type Store struct {
	epoch string

	mu      sync.RWMutex
	closed  bool
	version uint64
	floor   uint64
	seq     uint64 // orders entries written at the same version
	items   map[synkfs.Key]*item
	byKey   *skiplist[synkfs.Key] // live records only
	byVer   *skiplist[verKey]     // every record and tombstone
	tombs   []tombRef             // tombstones in the order written
	meta    map[string][]byte
}

// item is what the store holds for one key. body is never shared with a
// caller.
type item struct {
	version uint64
	seq     uint64
	deleted bool
	time    time.Time
	body    []byte
}

type verKey struct {
	version, seq uint64
	key          synkfs.Key
}

// tombRef points at a tombstone in write order; it is stale when the key
// has been written again since (its seq no longer matches).
type tombRef struct {
	key  synkfs.Key
	seq  uint64
	time time.Time
}

var _ synkfs.Store = (*Store)(nil)

// New returns an empty store with a random epoch.
func New() *Store {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return &Store{
		epoch: hex.EncodeToString(b[:]),
		items: make(map[synkfs.Key]*item),
		byKey: newSkiplist(synkfs.Key.Compare),
		byVer: newSkiplist(compareVer),
		meta:  make(map[string][]byte),
	}
}

func compareVer(a, b verKey) int {
	if c := cmp.Compare(a.version, b.version); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// Epoch returns the random id made by New.
func (s *Store) Epoch() string { return s.epoch }

// Version returns the version of the last applied batch.
func (s *Store) Version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// Floor returns the highest version of a tombstone dropped by Compact.
func (s *Store) Floor() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.floor
}

// Get returns a copy of the live record with key k.
func (s *Store) Get(k synkfs.Key) (synkfs.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrClosed)
	}
	it, ok := s.items[k]
	if !ok || it.deleted {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrNotFound)
	}
	return synkfs.Record{Key: k, Version: it.version, Body: bytes.Clone(it.body)}, nil
}

// Lookup returns the version of k and whether it is a tombstone, without
// its body.
func (s *Store) Lookup(k synkfs.Key) (synkfs.Change, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.items[k]
	if s.closed || !ok {
		return synkfs.Change{}, false
	}
	return synkfs.Change{Record: synkfs.Record{Key: k, Version: it.version}, Deleted: it.deleted, Time: it.time}, true
}

// Apply commits b. Puts are applied in order, then deletes: a key named
// twice in one batch ends as the last of them. Every key must be valid;
// otherwise nothing is applied.
func (s *Store) Apply(ctx context.Context, b synkfs.Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("apply batch %d: %w", b.Version, err)
	}
	for _, r := range b.Puts {
		if err := r.Key.Validate(); err != nil {
			return fmt.Errorf("apply batch %d: %w", b.Version, err)
		}
	}
	for _, d := range b.Deletes {
		if err := d.Key.Validate(); err != nil {
			return fmt.Errorf("apply batch %d: %w", b.Version, err)
		}
	}
	// Copy bodies before taking the lock, to keep the critical section short.
	bodies := make([][]byte, len(b.Puts))
	for i, r := range b.Puts {
		bodies[i] = bytes.Clone(r.Body)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("apply batch %d: %w", b.Version, synkfs.ErrClosed)
	}
	if b.Version < s.version {
		return fmt.Errorf("apply batch %d onto version %d: %w", b.Version, s.version, synkfs.ErrStaleVersion)
	}
	now := time.Now()
	for i, r := range b.Puts {
		s.write(r.Key, &item{version: r.Version, body: bodies[i]})
	}
	for _, d := range b.Deletes {
		s.write(d.Key, &item{version: d.Version, deleted: true, time: now})
	}
	for k, v := range b.Meta {
		if v == nil {
			delete(s.meta, k)
		} else {
			s.meta[k] = bytes.Clone(v)
		}
	}
	s.version = b.Version
	return nil
}

// write replaces whatever the store holds for k with it. Callers hold mu.
func (s *Store) write(k synkfs.Key, it *item) {
	s.seq++
	it.seq = s.seq
	if old, ok := s.items[k]; ok {
		s.byVer.delete(verKey{old.version, old.seq, k})
		if !old.deleted && it.deleted {
			s.byKey.delete(k)
		}
	}
	if !it.deleted {
		s.byKey.insert(k) // no-op when already live
	} else {
		s.tombs = append(s.tombs, tombRef{key: k, seq: it.seq, time: it.time})
	}
	s.items[k] = it
	s.byVer.insert(verKey{it.version, it.seq, k})
}

// Since calls fn in ascending version order for every record and tombstone
// above v. It copies what it reports under the read lock and calls fn
// after releasing it, so fn may call back into the store.
func (s *Store) Since(v uint64, fn func(synkfs.Change) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("since %d: %w", v, synkfs.ErrClosed)
	}
	var out []synkfs.Change
	for n := s.byVer.seek(verKey{version: v + 1}); n != nil; n = n.next[0] {
		it := s.items[n.key.key]
		c := synkfs.Change{Record: synkfs.Record{Key: n.key.key, Version: it.version}, Deleted: it.deleted, Time: it.time}
		if !it.deleted {
			c.Body = bytes.Clone(it.body)
		}
		out = append(out, c)
	}
	s.mu.RUnlock()
	for _, c := range out {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// Scan returns up to limit live records with keys after `after`, in key
// order. A limit of 0 or less returns nothing.
func (s *Store) Scan(after synkfs.Key, limit int) ([]synkfs.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("scan after %s: %w", after, synkfs.ErrClosed)
	}
	var out []synkfs.Record
	n := s.byKey.seek(after)
	if n != nil && n.key == after {
		n = n.next[0]
	}
	for ; n != nil && len(out) < limit; n = n.next[0] {
		it := s.items[n.key]
		out = append(out, synkfs.Record{Key: n.key, Version: it.version, Body: bytes.Clone(it.body)})
	}
	return out, nil
}

// Count returns the number of live records.
func (s *Store) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byKey.len
}

// Meta returns a copy of a metadata value.
func (s *Store) Meta(key string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.meta[key]
	if s.closed || !ok {
		return nil, false
	}
	return bytes.Clone(v), true
}

// Compact drops tombstones written before t, raising Floor to the highest
// version dropped. It costs O(tombstones written before t).
func (s *Store) Compact(ctx context.Context, before time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("compact: %w", synkfs.ErrClosed)
	}
	i := 0
	for ; i < len(s.tombs) && s.tombs[i].time.Before(before); i++ {
		ref := s.tombs[i]
		it, ok := s.items[ref.key]
		if !ok || it.seq != ref.seq {
			continue // written again since
		}
		delete(s.items, ref.key)
		s.byVer.delete(verKey{it.version, it.seq, ref.key})
		s.floor = max(s.floor, it.version)
	}
	if i > 0 {
		s.tombs = append(s.tombs[:0:0], s.tombs[i:]...)
	}
	return nil
}

// Close drops the store's contents; every later call that can fail
// returns an error wrapping synkfs.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("close: %w", synkfs.ErrClosed)
	}
	s.closed = true
	s.items, s.meta, s.tombs = nil, nil, nil
	s.byKey = newSkiplist(synkfs.Key.Compare)
	s.byVer = newSkiplist(compareVer)
	return nil
}
