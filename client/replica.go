package client

import (
	"context"
	"iter"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// Replica is the local side the client syncs: it keeps the records, the
// cursor (epoch and version last applied) and the staged local edits, all
// durably if it wants to survive a restart. The replica engine implements it;
// so does package memreplica, for tests and tools.
//
// The client calls these methods from one goroutine at a time (the one
// running Run or SyncOnce), never concurrently with each other. The replica
// may stage edits from other goroutines meanwhile; it synchronizes that
// itself and calls Client.Kick so that they are pushed soon.
type Replica interface {
	// Cursor returns the server epoch and version this replica last
	// applied: ("", 0) for a replica that never synced. The client sends it
	// in its hello and asks for changes since it.
	Cursor() (epoch string, version uint64)

	// ApplyRemote applies a changes message from the server, which holds
	// every record and tombstone newer than some version at or below the
	// cursor, and then sets the cursor to (epoch, ch.Version), all in one
	// durable step: once it returns nil, Cursor must report the new
	// version. Records may repeat ones already applied; applying them again
	// must be harmless. A record with an unsynced local edit is the
	// replica's conflict to settle, never to overwrite silently.
	// An error ends the connection; the client reconnects with backoff and
	// resumes from Cursor.
	ApplyRemote(ctx context.Context, epoch string, ch *wire.Changes) error

	// ApplySnapshot replaces the replica's view of the server with a
	// snapshot: the server history is not continuous with the cursor (a new
	// epoch, or the cursor is below what the server compacted). The
	// replica ranges over s.Pages to the end (pages come in key order and
	// are fetched from the server as it goes), stores the records, removes
	// the records the snapshot did not contain unless they carry unsynced
	// edits, and then sets the cursor to (s.Epoch, s.Version). It must keep
	// local edits: bases from the old history mean nothing now, so the
	// replica may re-stage them against the snapshot's records.
	//
	// Batches that NextBatch returned before and that were not
	// acknowledged may be dropped and their edits re-staged under new ids:
	// the server has not applied them (their ids are above the welcome's
	// lastBatch) and the client has not resent them in this connection.
	//
	// If the page iterator yields an error, the replica must return an
	// error and must not move the cursor; pages it already stored are
	// harmless (a later snapshot supersedes them). Returning nil without
	// consuming every page is an error.
	ApplySnapshot(ctx context.Context, s *Snapshot) error

	// NextBatch returns the oldest staged batch that was not acknowledged,
	// or ok=false when nothing is staged. Until Acked is called for it (or
	// ApplySnapshot runs), NextBatch keeps returning the same batch with the
	// same id and content: a resent batch must be identical, because the
	// server applies each id once. Ids are positive and increase per
	// replica (they are the replica's, durably, across restarts). Each
	// record's and each delete's Version is its base: the server version
	// of that record the replica last saw, 0 for a create.
	NextBatch() (b Batch, ok bool)

	// Acked hands over the server's answer to batch b; the replica then
	// unstages it: records applied take ack.Version as their version,
	// conflicts (ack.Results with wire.StatusConflict, carrying the
	// server's current record or tombstone) are settled or kept for the
	// user, and rejected records (wire.StatusRejected, with a code and a
	// reason) go to a quarantine; they are never retried.
	//
	// A duplicate ack (ack.Duplicate) means the batch was applied in an
	// earlier connection. When the server kept its results, it repeats
	// them (and the batch's version), to be settled like any ack; a
	// duplicate without results may carry the server's current version
	// or none, so the replica unstages the batch and learns the records'
	// versions from the changes that follow. A batch the server refused as a whole for good (too large,
	// too many records, invalid, forbidden) arrives as a synthetic ack
	// whose Results reject every record with the server's code and reason.
	// Results list only the records that were not applied; a record
	// missing from them was applied.
	//
	// An error ends the connection; the batch stays staged and is resent
	// (or dropped as a duplicate) after reconnecting.
	Acked(ctx context.Context, b Batch, ack *wire.Ack) error
}

// Batch is one staged push: records to create or update and keys to
// delete, applied by the server atomically and exactly once per ID.
type Batch struct {
	// ID is the replica's batch id: positive, increasing, stable across
	// resends.
	ID uint64
	// Update holds full records; each Version is the record's base.
	Update []synkfs.Record
	// Delete holds keys to delete; each Version is the record's base.
	Delete []synkfs.Tombstone
}

// Len returns the number of records the batch changes.
func (b *Batch) Len() int { return len(b.Update) + len(b.Delete) }

// Snapshot is a walk over every live record on the server, handed to
// Replica.ApplySnapshot.
type Snapshot struct {
	// Epoch is the server's epoch.
	Epoch string
	// Version is the server version when the first page was read; the
	// replica's cursor becomes (Epoch, Version) once every page is applied.
	// Changes made during the walk arrive afterwards as changes since it.
	Version uint64
	// Total is the number of live records the server held when the first
	// page was read (0 when it does not say): a figure for progress, as
	// records change during the walk.
	Total int
	// Pages yields the pages in key order, each a slice of records the
	// replica may keep, fetching each from the server as the previous one
	// is consumed. After an error it yields nothing more. It may be
	// ranged over once, and only during ApplySnapshot.
	Pages iter.Seq2[[]synkfs.Record, error]
}
