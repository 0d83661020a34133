package replica

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
)

var bgctx = context.Background()

var randRead = rand.Read

// maxGuardRetries bounds how often an apply refused because a file changed
// under it is retried after a rescan.
const maxGuardRetries = 5

// Scan looks at the whole folder and stages every local change it finds
// (edits, creations, deletions), each in the same atomic step as its
// stage entry, then kicks the client. It reports bad entries once, and
// drops the sidecars of conflict copies the user deleted. It runs at
// start, when the watcher lost track, and for the periodic verification.
func (r *Replica) Scan() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errClosed
	}
	n, err := r.scanLocked()
	if pruneSidecars(r.root) > 0 {
		r.markStatus()
	}
	cl := r.cl
	r.mu.Unlock()
	if n > 0 && cl != nil {
		cl.Kick()
	}
	return err
}

// ignored reports whether the watcher may drop events for rel: the store's
// ignore rules (conflict copies among them).
func (r *Replica) ignored(rel string) bool {
	return r.store.Matcher().IsIgnored(rel)
}

// scanLocked stages what ScanChanges reports and returns how many changes
// it staged. r.mu must be held.
func (r *Replica) scanLocked() (int, error) {
	for attempt := 0; ; attempt++ {
		rep, err := r.store.ScanChanges()
		if err != nil {
			return 0, err
		}
		n, err := r.stageReport(&rep, nil)
		var de *fsstore.DirtyError
		if errors.As(err, &de) && attempt < maxGuardRetries {
			continue // a file changed again while we staged it
		}
		return n, err
	}
}

// stageReport applies one scan's findings: of the whole folder when
// scope is nil, else of the paths in scope (see fsstore.ScanPaths).
// r.mu must be held.
//
// Edits are staged by adopting the files as they are (fsstore's
// ApplyOptions.Adopt): the store records them without rewriting what the
// user may have open in an editor.
func (r *Replica) stageReport(rep *fsstore.Report, scope []string) (int, error) {
	now := r.opts.Now()
	r.reportBad(rep.Bad, scope)

	var b synkfs.Batch
	var events []Event
	stagePut := func(rec synkfs.Record) {
		rel, _ := fsstore.KeyPath(rec.Key)
		b.Puts = append(b.Puts, rec)
		r.stageOne(rec.Key, false, now)
		events = append(events, Event{Kind: EventStaged, Key: rec.Key, Path: rel})
	}
	for _, rec := range rep.Edited {
		stagePut(rec)
	}
	for _, rec := range rep.Created {
		stagePut(rec)
	}

	dels := rep.Deleted
	live := r.store.Count()
	if len(dels) > 0 && !r.opts.ConfirmDeletes && live >= massDeleteMin && 2*len(dels) > live {
		if r.paused != len(dels) {
			r.log.Warn("many records were deleted at once; holding the deletes back instead of deleting them everywhere. "+
				"If this is what you want, run synkfs sync --confirm-deletes", "deleted", len(dels), "records", live)
			r.emit(Event{Kind: EventPaused, Message: fmt.Sprintf("%d of %d records deleted at once: run synkfs sync --confirm-deletes to delete them everywhere", len(dels), live)})
			r.paused = len(dels)
			r.markStatus()
		}
		dels = nil
	} else if r.paused != 0 {
		r.paused = 0
		r.markStatus()
	}
	for _, t := range dels {
		b.Deletes = append(b.Deletes, t)
		r.stageOne(t.Key, true, now)
		events = append(events, Event{Kind: EventStaged, Key: t.Key, Deleted: true})
	}
	if len(b.Puts)+len(b.Deletes) == 0 {
		return 0, nil
	}
	if err := r.applyWith(b, nil, fsstore.ApplyOptions{Guard: true, Adopt: true}); err != nil {
		// Undo the in-memory staging: reload it from the store.
		r.reloadStage()
		return 0, err
	}
	for _, ev := range events {
		r.emit(ev)
	}
	r.log.Debug("staged local changes", "puts", len(b.Puts), "deletes", len(b.Deletes))
	return len(events), nil
}

// stageOne records a local change of k in the in-memory stage.
func (r *Replica) stageOne(k synkfs.Key, deleted bool, t time.Time) {
	e := r.stage[k]
	if e == nil {
		e = &stageEntry{Key: k, Since: t}
		r.stage[k] = e
	}
	e.Deleted = deleted
	if e.Batch != 0 {
		e.Again = true
	}
	for i, q := range r.st.Quarantine {
		if q.Key == k {
			r.st.Quarantine = append(r.st.Quarantine[:i], r.st.Quarantine[i+1:]...)
			break
		}
	}
}

// reloadStage resets the in-memory stage and state to what the store
// holds, after a failed apply.
func (r *Replica) reloadStage() {
	r.stage = map[synkfs.Key]*stageEntry{}
	r.st = state{}
	r.sealed = nil
	if err := r.load(); err != nil {
		r.log.Error("reload sync state", "err", err)
	}
}

// applyGuarded applies b with the store's guard, so that no file holding
// an edit the store has not seen is overwritten or removed.
func (r *Replica) applyGuarded(b synkfs.Batch) error {
	return r.applyWith(b, nil, fsstore.ApplyOptions{Guard: true})
}

// reportBad logs each bad entry once (again if its reason changes) and
// forgets the ones that were fixed or removed: among all of them after a
// full scan (scope nil), among the paths in scope (files, or type folders
// and what they hold) after a partial one.
func (r *Replica) reportBad(bad []fsstore.BadEntry, scope []string) {
	seen := make(map[string]bool, len(bad))
	for _, e := range bad {
		seen[e.Path] = true
		if r.bad[e.Path] == e.Reason {
			continue
		}
		r.bad[e.Path] = e.Reason
		r.log.Warn("not a valid record; it is not synced until fixed", "path", e.Path, "reason", e.Reason)
		r.emit(Event{Kind: EventBad, Key: e.Key, Path: e.Path, Message: e.Reason})
		r.markStatus()
	}
	inScope := func(p string) bool {
		if scope == nil {
			return true
		}
		dir, _, _ := strings.Cut(p, "/")
		return slices.Contains(scope, p) || slices.Contains(scope, dir)
	}
	for p := range r.bad {
		if !seen[p] && inScope(p) {
			delete(r.bad, p)
			r.markStatus()
		}
	}
}

// evictBad moves a bad entry at k's path into the recovery folder so that
// a remote change can be written there; the user's bytes stay recoverable.
// The file is moved, not copied: a program still writing to it (a save
// caught half-way) goes on writing into the recovery copy, so the rest of
// what it writes is kept too.
func (r *Replica) evictBad(k synkfs.Key) error {
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		return err
	}
	// Both ends by the store's confinement rules: neither the record's
	// type folder nor a recovery folder may be a link.
	p, err := fsstore.SafePath(r.root, rel)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(p); err != nil {
		return nil
	}
	saved, err := fsstore.SafePath(r.root, recoveryRel(r.root, rel, "invalid-local", r.opts.Now()))
	if err != nil {
		return fmt.Errorf("keep a recovery copy of %s: %w", rel, err)
	}
	if err := os.MkdirAll(filepath.Dir(saved), 0o755); err != nil {
		return fmt.Errorf("keep a recovery copy of %s: %w", rel, err)
	}
	if err := os.Rename(p, saved); err != nil {
		// Another file system under the state folder: copy, then remove.
		data, rerr := fsstore.ReadFileNoFollow(p)
		if rerr != nil {
			return nil
		}
		if saved, err = saveRecovery(r.root, k, data, "invalid-local", r.opts.Now()); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	syncDir(filepath.Dir(saved))
	syncDir(filepath.Dir(p))
	r.log.Warn("a remote change replaced an invalid local file; its content is kept", "path", rel, "kept", saved)
	delete(r.bad, rel)
	return nil
}

// evictQuiet returns how long a bad file must have gone unwritten before a
// remote change may evict it: one written to more recently is taken to be
// a save still under way, not a broken file.
func (r *Replica) evictQuiet() time.Duration { return 10 * r.opts.Debounce }

// evictMaxWait bounds how long one remote change waits for bad files to
// settle (a file written without pause for longer is evicted all the same).
func (r *Replica) evictMaxWait() time.Duration { return 20 * r.opts.Debounce }

// badBeingWritten returns how long until the youngest of the bad files
// among keys has been quiet for evictQuiet; 0 when none of them was
// written to that recently. r.mu must be held.
func (r *Replica) badBeingWritten(keys []synkfs.Key) time.Duration {
	var wait time.Duration
	quiet := r.evictQuiet()
	for _, k := range keys {
		rel, err := fsstore.KeyPath(k)
		if err != nil || r.bad[rel] == "" {
			continue
		}
		fi, err := os.Lstat(filepath.Join(r.root, filepath.FromSlash(rel)))
		if err != nil {
			continue
		}
		if left := quiet - time.Since(fi.ModTime()); left > wait {
			wait = min(left, quiet)
		}
	}
	return wait
}

// ScanPaths stages the local changes behind the paths the watcher
// reported, looking only at those files (see fsstore.ScanPaths). When it
// finds more than one deletion, or deletes are held back, it scans the
// whole folder instead, so that the mass-delete guard judges a folder
// emptied over several events by the whole picture.
func (r *Replica) ScanPaths(paths []string) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errClosed
	}
	n, err := r.scanPathsLocked(paths)
	cl := r.cl
	r.mu.Unlock()
	if n > 0 && cl != nil {
		cl.Kick()
	}
	return err
}

func (r *Replica) scanPathsLocked(paths []string) (int, error) {
	for attempt := 0; ; attempt++ {
		rep, err := r.store.ScanPaths(paths)
		if err != nil {
			return 0, err
		}
		if len(rep.Deleted) > 1 || (len(rep.Deleted) > 0 && r.paused > 0) {
			return r.scanLocked()
		}
		n, err := r.stageReport(&rep, paths)
		var de *fsstore.DirtyError
		if errors.As(err, &de) && attempt < maxGuardRetries {
			continue // a file changed again while we staged it
		}
		return n, err
	}
}
