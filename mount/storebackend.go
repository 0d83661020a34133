package mount

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/merge"
)

// StoreBackend is a Backend over an fsstore.Store's folder.
//
// Made by NewStoreBackend, it works alone, with no network: it acts as its
// own server, so each save or delete applies one batch at the next store
// version. Made by NewEngineBackend, a sync engine that owns the store (the
// replica) decides: a save writes the record's file into the folder, the
// way an editor saves in a synced folder, and hands its path to the engine
// to stage at once.
//
// Either way, bad entries are written straight into the folder, where
// fsstore's scans report them too. Listings and attributes come from the
// store's index (fsstore.Store.Entries), which no one else changes behind
// the mount's back: the state folder is the mount's own. Only the files
// the index may not describe (bad entries, saves the engine did not adopt
// as written, files found changed at start) are looked at on disk.
// Contents are read from the files.
type StoreBackend struct {
	store  *fsstore.Store
	root   string
	max    int64
	engine *Engine

	mu  sync.Mutex        // serialises writes; guards bad and loose
	bad map[string]string // relpath -> reason
	// loose are the record files (relpaths) whose attributes are taken
	// from the file rather than the index, as are those of bad entries.
	// Being in it is never wrong, only slower.
	loose map[string]struct{}

	wmu      sync.Mutex
	watchers map[int]func([]synkfs.Key)
	nextW    int
}

var _ Backend = (*StoreBackend)(nil)

// Engine connects a StoreBackend to the sync engine that owns its store.
// Every field is required.
type Engine struct {
	// Stage stages the local changes behind the given record files
	// ('/'-separated, relative to the folder) that the mount has just
	// written or removed; it returns once they are staged durably.
	Stage func(relpaths []string) error
	// Status returns the sync status as JSON.
	Status func() ([]byte, error)
	// Conflicts and BadEntries list what needs a person.
	Conflicts  func() ([]Problem, error)
	BadEntries func() ([]Problem, error)
}

// NewEngineBackend serves s, whose folder e keeps in sync. The engine
// calls Changed for every change it writes into the folder (a remote
// change, a conflict copy, a settled conflict).
func NewEngineBackend(s *fsstore.Store, e Engine, maxRecord int64) (*StoreBackend, error) {
	if e.Stage == nil || e.Status == nil || e.Conflicts == nil || e.BadEntries == nil {
		return nil, errors.New("engine backend: every Engine function is required")
	}
	b, err := NewStoreBackend(s, maxRecord)
	if err != nil {
		return nil, err
	}
	b.engine = &e
	return b, nil
}

// NewStoreBackend serves s. It looks once through the tree for bad entries
// left from earlier. maxRecord is the largest valid record in bytes (0:
// fsstore.DefaultMaxRecordSize); s stays the caller's to close.
func NewStoreBackend(s *fsstore.Store, maxRecord int64) (*StoreBackend, error) {
	if maxRecord <= 0 {
		maxRecord = fsstore.DefaultMaxRecordSize
	}
	b := &StoreBackend{store: s, root: s.Root(), max: maxRecord, bad: map[string]string{}, loose: map[string]struct{}{}, watchers: map[int]func([]synkfs.Key){}}
	rep, err := s.ScanChanges()
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.Root(), err)
	}
	for _, e := range rep.Bad {
		b.bad[e.Path] = e.Reason
	}
	// Edits made in the folder before the mount: the index does not
	// describe those files (an engine stages them soon; without one they
	// stay as they are).
	for _, recs := range [][]synkfs.Record{rep.Edited, rep.Created} {
		for _, r := range recs {
			b.setLoose(r.Key, true)
		}
	}
	for _, d := range rep.Deleted {
		b.setLoose(d.Key, true)
	}
	return b, nil
}

// Store returns the store served.
func (b *StoreBackend) Store() *fsstore.Store { return b.store }

func (b *StoreBackend) path(k synkfs.Key) (string, string, error) {
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		return "", "", err
	}
	return rel, filepath.Join(b.root, filepath.FromSlash(rel)), nil
}

// Types lists the type folders of the tree.
func (b *StoreBackend) Types() ([]string, error) {
	ents, err := os.ReadDir(b.root)
	if err != nil {
		return nil, fmt.Errorf("list types: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || b.store.Matcher().IsIgnoredDir(e.Name()) {
			continue
		}
		if t, err := fsstore.UnescapeName(e.Name()); err == nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// List lists the record files of a type folder from the store's index,
// and the few files the index may not describe from the folder.
func (b *StoreBackend) List(typ string) ([]Entry, error) {
	dir := fsstore.EscapeName(typ)
	if fi, err := os.Stat(filepath.Join(b.root, dir)); err != nil {
		return nil, fmt.Errorf("list %s: %w", typ, notFound(err))
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("list %s: %w", typ, synkfs.ErrNotFound)
	}
	b.mu.Lock()
	var onDisk []string // the type's files to stat
	for _, m := range []map[string]struct{}{b.loose, b.badSet()} {
		for rel := range m {
			if len(rel) > len(dir) && rel[:len(dir)] == dir && rel[len(dir)] == '/' && !slices.Contains(onDisk, rel) {
				onDisk = append(onDisk, rel)
			}
		}
	}
	b.mu.Unlock()
	ents := b.store.Entries(typ)
	out := make([]Entry, 0, len(ents)+len(onDisk))
	for _, ei := range ents {
		rel, err := fsstore.KeyPath(ei.Key)
		if err != nil || b.store.Matcher().IsIgnored(rel) || slices.Contains(onDisk, rel) {
			continue
		}
		if !ei.Known {
			onDisk = append(onDisk, rel)
			continue
		}
		out = append(out, Entry{ID: ei.Key.ID, FileInfo: FileInfo{Size: ei.Size, Mtime: ei.Mtime, Version: ei.Version}})
	}
	for _, rel := range onDisk {
		k, err := fsstore.PathKey(rel)
		if err != nil || b.store.Matcher().IsIgnored(rel) {
			continue
		}
		fi, err := os.Stat(filepath.Join(b.root, filepath.FromSlash(rel)))
		if err != nil || !fi.Mode().IsRegular() {
			continue // removed meanwhile
		}
		out = append(out, Entry{ID: k.ID, FileInfo: b.info(k, rel, fi)})
	}
	return out, nil
}

// badSet returns the relpaths of the bad entries as a set; b.mu must be
// held.
func (b *StoreBackend) badSet() map[string]struct{} {
	m := make(map[string]struct{}, len(b.bad))
	for rel := range b.bad {
		m[rel] = struct{}{}
	}
	return m
}

// onDisk reports whether rel's attributes must come from its file.
func (b *StoreBackend) onDisk(rel string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, loose := b.loose[rel]
	_, bad := b.bad[rel]
	return loose || bad
}

// setLoose marks k's file as one whose attributes come from the file
// (loose) or from the index again.
func (b *StoreBackend) setLoose(k synkfs.Key, loose bool) {
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if loose {
		b.loose[rel] = struct{}{}
	} else {
		delete(b.loose, rel)
	}
}

func (b *StoreBackend) info(k synkfs.Key, rel string, fi fs.FileInfo) FileInfo {
	c, _ := b.store.Lookup(k)
	b.mu.Lock()
	_, bad := b.bad[rel]
	b.mu.Unlock()
	return FileInfo{Size: fi.Size(), Mtime: fi.ModTime(), Version: c.Version, Bad: bad}
}

// Stat returns the attributes of k's file: from the index, or from the
// file when the index may not describe it.
func (b *StoreBackend) Stat(k synkfs.Key) (FileInfo, error) {
	rel, p, err := b.path(k)
	if err != nil {
		return FileInfo{}, err
	}
	if !b.onDisk(rel) {
		ei, ok := b.store.Entry(k)
		if !ok {
			return FileInfo{}, fmt.Errorf("stat %s: %w", k, synkfs.ErrNotFound)
		}
		if ei.Known {
			return FileInfo{Size: ei.Size, Mtime: ei.Mtime, Version: ei.Version}, nil
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s: %w", k, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return FileInfo{}, fmt.Errorf("stat %s: %w", k, synkfs.ErrNotFound)
	}
	return b.info(k, rel, fi), nil
}

// Get reads k's file. Should the file not be the size the index says (it
// cannot happen while only the mount and its engine write the folder), the
// file is trusted from then on and the mount is told to drop what the
// kernel cached of it.
func (b *StoreBackend) Get(k synkfs.Key) ([]byte, FileInfo, error) {
	rel, p, err := b.path(k)
	if err != nil {
		return nil, FileInfo{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("get %s: %w", k, notFound(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("get %s: %w", k, err)
	}
	data := make([]byte, 0, fi.Size())
	buf := bytes.NewBuffer(data)
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, FileInfo{}, fmt.Errorf("get %s: %w", k, err)
	}
	info := b.info(k, rel, fi)
	info.Size = int64(buf.Len())
	if !b.onDisk(rel) {
		if ei, ok := b.store.Entry(k); !ok || (ei.Known && ei.Size != info.Size) {
			b.setLoose(k, true)
			b.Changed([]synkfs.Key{k})
		}
	}
	return buf.Bytes(), info, nil
}

// validate returns content's canonical body, or the reason it is not a
// valid record of key k (the rules fsstore applies to record files).
func (b *StoreBackend) validate(k synkfs.Key, content []byte) ([]byte, string) {
	if int64(len(content)) > b.max {
		return nil, fmt.Sprintf("file is %d bytes, over the %d byte limit", len(content), b.max)
	}
	body, err := merge.CanonicalObject(content)
	if err != nil {
		return nil, "invalid JSON: " + err.Error()
	}
	if !bytes.Contains(body, []byte(`"type":`)) && !bytes.Contains(body, []byte(`"id":`)) {
		return body, ""
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, "invalid JSON: " + err.Error()
	}
	for _, f := range []struct{ name, want string }{{synkfs.FieldType, k.Type}, {synkfs.FieldID, k.ID}} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		var got string
		if err := json.Unmarshal(raw, &got); err != nil || got != f.want {
			return nil, fmt.Sprintf("field %q is %s but the file's path says %q", f.name, raw, f.want)
		}
	}
	return body, ""
}

// Put saves content as k's file: a valid record becomes one batch at the
// next store version, anything else a bad entry in the tree.
func (b *StoreBackend) Put(ctx context.Context, k synkfs.Key, content []byte) error {
	rel, p, err := b.path(k)
	if err != nil {
		return err
	}
	if b.engine != nil {
		b.setLoose(k, true) // until the engine vouches for the file
		if err := writeAtomic(p, content); err != nil {
			return fmt.Errorf("save %s: %w", k, err)
		}
		if err := b.engine.Stage([]string{rel}); err != nil {
			return fmt.Errorf("save %s: stage: %w", k, err)
		}
		b.settled(k, p, content)
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	body, reason := b.validate(k, content)
	if reason != "" {
		if err := writeAtomic(p, content); err != nil {
			return fmt.Errorf("save %s: %w", k, err)
		}
		b.bad[rel] = reason
		return nil
	}
	_, wasBad := b.bad[rel]
	if c, ok := b.store.Lookup(k); ok && !c.Deleted && !wasBad {
		if cur, err := b.store.Get(k); err == nil && bytes.Equal(cur.Body, body) {
			return nil // the same record, perhaps reformatted: no change
		}
	}
	v := b.store.Version() + 1
	err = b.store.Apply(ctx, synkfs.Batch{Version: v, Puts: []synkfs.Record{{Key: k, Version: v, Body: body}}})
	if err != nil {
		return fmt.Errorf("save %s: %w", k, err)
	}
	delete(b.bad, rel)
	delete(b.loose, rel)
	return nil
}

// settled takes k's attributes from the index again once the engine staged
// the save of content at p: when content is a valid record and the index
// describes the file exactly as it is now.
func (b *StoreBackend) settled(k synkfs.Key, p string, content []byte) {
	if _, reason := b.validate(k, content); reason != "" {
		return
	}
	ei, ok := b.store.Entry(k)
	fi, err := os.Stat(p)
	if ok && ei.Known && err == nil && ei.Size == fi.Size() && ei.Mtime.Equal(fi.ModTime()) {
		b.setLoose(k, false)
	}
}

// Delete removes k's record, or its bad entry.
func (b *StoreBackend) Delete(ctx context.Context, k synkfs.Key) error {
	rel, p, err := b.path(k)
	if err != nil {
		return err
	}
	if b.engine != nil {
		b.setLoose(k, true) // until the engine staged the delete
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("delete %s: %w", k, notFound(err))
		}
		if err := b.engine.Stage([]string{rel}); err != nil {
			return fmt.Errorf("delete %s: stage: %w", k, err)
		}
		if _, live := b.store.Entry(k); !live {
			b.setLoose(k, false)
		}
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.store.Lookup(k); ok && !c.Deleted {
		v := b.store.Version() + 1
		if err := b.store.Apply(ctx, synkfs.Batch{Version: v, Deletes: []synkfs.Tombstone{{Key: k, Version: v}}}); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	} else if err := os.Remove(p); err != nil {
		return fmt.Errorf("delete %s: %w", k, notFound(err))
	}
	delete(b.bad, rel)
	delete(b.loose, rel)
	return nil
}

// MakeType makes the type folder.
func (b *StoreBackend) MakeType(typ string) error {
	name := fsstore.EscapeName(typ)
	if typ == "" || len(name) > fsstore.MaxNameLen {
		return fmt.Errorf("make type %q: %w", typ, ErrInvalid)
	}
	if err := os.Mkdir(filepath.Join(b.root, name), 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("make type %s: %w", typ, ErrExist)
		}
		return fmt.Errorf("make type %s: %w", typ, err)
	}
	return nil
}

// RemoveType removes the type folder if it holds no file at all.
func (b *StoreBackend) RemoveType(typ string) error {
	dir := filepath.Join(b.root, fsstore.EscapeName(typ))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("remove type %s: %w", typ, notFound(err))
	}
	for _, e := range ents {
		if ok, _ := filepath.Match(".synk-*.tmp", e.Name()); !ok {
			return fmt.Errorf("remove type %s: %w", typ, ErrNotEmpty)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove type %s: %w", typ, err)
	}
	return nil
}

// storeStatus is the status StoreBackend reports.
type storeStatus struct {
	Dir        string `json:"dir"`
	Server     string `json:"server"`
	Connection string `json:"connection"`
	Version    uint64 `json:"localVersion"`
	Records    int    `json:"records"`
	Bad        int    `json:"badEntries"`
}

// Status reports the store: there is no server.
func (b *StoreBackend) Status() ([]byte, error) {
	if b.engine != nil {
		return b.engine.Status()
	}
	b.mu.Lock()
	n := len(b.bad)
	b.mu.Unlock()
	st := storeStatus{Dir: b.root, Connection: "local only (no --server)", Version: b.store.Version(), Records: b.store.Count(), Bad: n}
	return json.MarshalIndent(st, "", "  ")
}

// Conflicts returns none: without a server nothing conflicts.
func (b *StoreBackend) Conflicts() ([]Problem, error) {
	if b.engine != nil {
		return b.engine.Conflicts()
	}
	return []Problem{}, nil
}

// BadEntries lists the files that are not valid records.
func (b *StoreBackend) BadEntries() ([]Problem, error) {
	if b.engine != nil {
		return b.engine.BadEntries()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Problem, 0, len(b.bad))
	for rel, reason := range b.bad {
		k, _ := fsstore.PathKey(rel)
		out = append(out, Problem{Path: rel, Key: k, Reason: reason})
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// Watch registers fn for the changes reported by ApplyRemote and Changed.
func (b *StoreBackend) Watch(fn func([]synkfs.Key)) func() {
	b.wmu.Lock()
	id := b.nextW
	b.nextW++
	b.watchers[id] = fn
	b.wmu.Unlock()
	return func() {
		b.wmu.Lock()
		delete(b.watchers, id)
		b.wmu.Unlock()
	}
}

// ApplyRemote applies a batch made elsewhere (as the sync engine applies
// what a server sent) and tells the watchers which keys changed. A batch
// version of 0 means the next store version, for every put and delete.
func (b *StoreBackend) ApplyRemote(ctx context.Context, batch synkfs.Batch) error {
	b.mu.Lock()
	if batch.Version == 0 {
		batch.Version = b.store.Version() + 1
		for i := range batch.Puts {
			batch.Puts[i].Version = batch.Version
		}
		for i := range batch.Deletes {
			batch.Deletes[i].Version = batch.Version
		}
	}
	err := b.store.Apply(ctx, batch)
	keys := make([]synkfs.Key, 0, len(batch.Puts)+len(batch.Deletes))
	for _, r := range batch.Puts {
		keys = append(keys, r.Key)
		if rel, kerr := fsstore.KeyPath(r.Key); kerr == nil {
			delete(b.bad, rel)
			if err == nil { // the store wrote the file: the index describes it
				delete(b.loose, rel)
			}
		}
	}
	for _, d := range batch.Deletes {
		keys = append(keys, d.Key)
		if rel, kerr := fsstore.KeyPath(d.Key); kerr == nil && err == nil {
			delete(b.loose, rel)
		}
	}
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("apply remote batch: %w", err)
	}
	b.Changed(keys)
	return nil
}

// Changed tells the mount that the records with these keys changed other
// than through it, so it drops what the kernel caches of them. It does not
// block.
func (b *StoreBackend) Changed(keys []synkfs.Key) {
	b.wmu.Lock()
	fns := make([]func([]synkfs.Key), 0, len(b.watchers))
	for _, fn := range b.watchers {
		fns = append(fns, fn)
	}
	b.wmu.Unlock()
	for _, fn := range fns {
		fn(keys)
	}
}

// notFound adds synkfs.ErrNotFound to a file-not-found error.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", synkfs.ErrNotFound, err)
	}
	return err
}

// writeAtomic writes data to path through a temporary file in the same
// folder (named as fsstore names its own, so it is never a record) and a
// rename. It does not fsync: a bad entry is the user's unfinished work and
// the journal does not cover it, the same as a file saved in a synced
// folder.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".synk-"+hex.EncodeToString(rnd[:])+".tmp")
	err := os.WriteFile(tmp, data, 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
