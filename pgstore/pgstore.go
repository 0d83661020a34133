// Package pgstore is the synkfs.Store kept in PostgreSQL, which several
// `synkfs serve` instances share. It implements synkfs.Store,
// synkfs.Committer and synkfs.Watcher over a pgx connection pool.
//
// # Tables
//
// Open creates or migrates these tables in the connection's default schema
// (the search_path). Applications may read them; only synkfs writes them.
//
//	synkfs_schema   version int: how many schema migrations have run (one row).
//
//	synkfs_head     exactly one row:
//	  epoch   text    random id made with the database; replicas see a
//	                  reset of history as a change of epoch
//	  version bigint  version of the last committed batch (0 when empty)
//	  floor   bigint  highest version of a tombstone dropped by Compact
//	  live    bigint  number of live records (what Count returns)
//
//	synkfs_records  one row per key, at its latest version:
//	  type, id   text COLLATE "C"  the key (primary key); "C" orders keys by
//	                               bytes, as synkfs.Key.Compare does
//	  version    bigint       version of the last write of the key
//	  deleted    boolean      true for a tombstone
//	  deleted_at timestamptz  when the tombstone was written (NULL if live)
//	  raw        bytea        the body exactly as written: a JSON object
//	                          without type, id and version (NULL if deleted)
//	  body       jsonb        the same body as JSONB, for applications to
//	                          query (NULL if deleted, or in the rare case
//	                          that PostgreSQL cannot hold it as JSONB: a
//	                          \u0000 in a string, a number beyond numeric)
//	  indexes: (version, type, id) for "changes since v";
//	           (deleted_at) WHERE deleted, for compaction
//
//	synkfs_meta     metadata of synkfs.Batch.Meta, such as the servers'
//	                table of client batch ids (exactly-once pushes):
//	  key   text COLLATE "C"  primary key
//	  value bytea             opaque to the store
//
// Why both raw and body: JSONB keeps neither key order, nor whitespace,
// nor the spelling of numbers and escapes, nor duplicate keys. synkfs
// bodies are kept in canonical form so that equal bodies are equal bytes,
// and what a client reads back must be what was written; so Get, Since and
// Scan return raw, and body is derived from it in the same statement. It
// costs the body's size twice on disk; in return applications get
// ordinary JSONB (body->>'name', GIN indexes) without synkfs depending on
// how PostgreSQL prints JSON.
//
// Keys and metadata keys are PostgreSQL text: they must be valid UTF-8
// without NUL bytes (ValidateKey, which the server consults). Versions are
// bigint: a version above 2^63-1 is refused.
//
// # One order of versions
//
// Every write (Commit, Apply, Compact) runs in one transaction that first
// locks the head row (SELECT ... FROM synkfs_head FOR UPDATE), reads the
// version v, writes its records at v+1, sets the head to v+1 and commits.
// The lock is held until the commit, and a second writer's SELECT ... FOR
// UPDATE returns only once the first writer's transaction has committed
// (or rolled back), reading the row as that commit left it (READ
// COMMITTED re-reads a row that was locked by a committed writer). So:
//
//   - versions are assigned in commit order: the transaction that commits
//     version n+1 started its writes only after version n was visible;
//   - the head row never names a version whose records are not yet
//     committed: it is updated in the same transaction as the records;
//   - hence when a reader has seen version V (from Version, from a
//     notification, or from a change in Since), every change at or below
//     V is already committed, and no change at or below V can ever commit
//     later. "Changes since V" then never misses one.
//
// A design that takes numbers from a sequence (nextval) without the lock
// breaks the last point: transaction A takes 11, B takes 12, B commits,
// a reader sees 12 and moves its mark to 12, then A commits 11 behind it.
// The cost of the lock is that commits of all instances are serial; each
// holds the lock for a few round trips (see the package benchmarks).
//
// # Notifications
//
// Each commit that moves the version or writes records runs
// pg_notify(channel, "<version> <instance>") in its transaction, so
// PostgreSQL delivers it only after the commit, when the version is
// readable. Watch listens on a connection of its own; see Watch.
//
// # Use from a server
//
//   - Write through Commit, never Apply: Apply takes an absolute version
//     chosen before its transaction, and two instances choosing the same
//     one would both succeed (a batch at the current version is allowed
//     by the Store contract), so a reader already past it misses one.
//   - Inside Commit's fn, read only through the View. A read through the
//     Store needs a second pool connection while fn holds one; with every
//     connection held by commits waiting for the head lock it would wait
//     for ever.
//   - Before checking the records of a large batch, call Preload on the
//     View (it implements Preloader): one query instead of one per key.
//   - Run one Watch per server for its life; on each call, catch up with
//     Since from the last version fanned out, as after a commit of its
//     own.
//   - Size the pool (Options.MaxConns, or pool_max_conns in the URL) for
//     the concurrent reads the server makes (Since, Scan, Get) plus one
//     per concurrent Commit; Watch uses a connection of its own.
//
// Every commit costs two round trips to PostgreSQL (BEGIN with the head
// lock, then the writes with COMMIT) plus those of fn's reads; bulk
// writes are one statement over arrays (unnest), whatever the batch size.
package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/synkfs/synkfs"
)

// Options tune a Store. The zero value (or nil) works.
type Options struct {
	// Channel is the LISTEN/NOTIFY channel of commits; instances sharing a
	// database must use the same one. Default "synkfs".
	Channel string
	// MaxConns bounds the connection pool (the listener of each Watch
	// uses one more). Default: pgxpool's, max(4, number of CPUs), or
	// pool_max_conns in the URL.
	MaxConns int32
	// Retries is how many times Commit and Apply run a transaction again
	// after a serialization failure or a deadlock. Default 5.
	Retries int
	// PageSize is how many rows Since reads per query. Default 1000.
	PageSize int
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Channel == "" {
		out.Channel = "synkfs"
	}
	if out.Retries <= 0 {
		out.Retries = 5
	}
	if out.PageSize <= 0 {
		out.PageSize = 1000
	}
	return out
}

// Store is a synkfs.Store in a PostgreSQL database. It is safe for
// concurrent use, and any number of Stores (in one process or many) may
// share one database.
type Store struct {
	pool     *pgxpool.Pool
	opts     Options
	epoch    string
	instance string // tags this Store's notifications, so Watch skips them

	ctx    context.Context // ends at Close; bounds the calls without a ctx
	cancel context.CancelFunc
	mu     sync.Mutex // orders Watch's wg.Add before Close's wg.Wait
	closed atomic.Bool
	wg     sync.WaitGroup // running Watch calls

	// The head as last read, returned when the database cannot be read.
	lastVersion, lastFloor, lastLive atomic.Uint64
}

var (
	_ synkfs.Store     = (*Store)(nil)
	_ synkfs.Committer = (*Store)(nil)
	_ synkfs.Watcher   = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string, as pgx reads them), runs the schema migrations that
// have not run yet, and returns the store. opts may be nil.
func Open(ctx context.Context, url string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: migrate schema: %w", err)
	}
	var epoch string
	if err := pool.QueryRow(ctx, `SELECT epoch FROM synkfs_head`).Scan(&epoch); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: read head: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := &Store{pool: pool, opts: o, epoch: epoch, instance: hex.EncodeToString(b[:])}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops every Watch (waiting for them to return) and closes the
// pool, waiting for calls in progress to give back their connections.
// Later calls fail with an error wrapping synkfs.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return fmt.Errorf("close: %w", synkfs.ErrClosed)
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// Pool returns the store's connection pool, for tests and for callers
// that read the tables themselves. Writing the tables directly breaks the
// version order described in the package doc.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// check returns an error wrapping ErrClosed once the store is closed.
func (s *Store) check(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, synkfs.ErrClosed)
	}
	return nil
}

// wrap adds context to err, and marks errors that come from a closed
// store as ErrClosed.
func (s *Store) wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if s.closed.Load() && !errors.Is(err, synkfs.ErrClosed) {
		return fmt.Errorf("%s: %w (%w)", msg, synkfs.ErrClosed, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// Epoch returns the random id the database was made with.
func (s *Store) Epoch() string { return s.epoch }

// headTries is how many times head reads the head row before it falls
// back to the values last read. A pooled connection that the database
// dropped (a restart, a killed backend) fails its next query, and the
// pool then dials a fresh one: the second try reads the database. The
// values last read may be behind what other instances committed since,
// and a server that welcomes a client ahead of that version sends it
// back to a full resync.
const headTries = 2

// head reads the head row without locking it. When the database cannot
// be read it returns the values last read, which the caller may already
// have seen: a version never appears to go back.
func (s *Store) head() (version, floor, live uint64) {
	for try := 0; try < headTries && s.check("read head") == nil; try++ {
		var v, f, l int64
		if err := s.pool.QueryRow(s.ctx, `SELECT version, floor, live FROM synkfs_head`).Scan(&v, &f, &l); err == nil {
			storeMax(&s.lastVersion, uint64(v))
			storeMax(&s.lastFloor, uint64(f))
			s.lastLive.Store(uint64(l))
			break
		}
		if s.ctx.Err() != nil {
			break
		}
	}
	return s.lastVersion.Load(), s.lastFloor.Load(), s.lastLive.Load()
}

// storeMax raises a to v if v is higher.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// Version reads the version of the last committed batch from the
// database, so it is never behind a version the caller has observed
// elsewhere (a notification, another instance). When the database cannot
// be read (or the store is closed) it returns the version last read.
func (s *Store) Version() uint64 {
	v, _, _ := s.head()
	return v
}

// Floor reads the highest version of a dropped tombstone (the value last
// read when the database cannot be read).
func (s *Store) Floor() uint64 {
	_, f, _ := s.head()
	return f
}

// Count reads the number of live records, kept in the head row by every
// write (the value last read when the database cannot be read).
func (s *Store) Count() int {
	_, _, l := s.head()
	return int(l)
}

// ValidateKey reports whether PostgreSQL text can hold k: valid UTF-8 and
// no NUL byte (besides synkfs.Key.Validate's rules). The server rejects
// such records one by one instead of failing the batch.
func (s *Store) ValidateKey(k synkfs.Key) error {
	if err := k.Validate(); err != nil {
		return err
	}
	if !validText(k.Type) || !validText(k.ID) {
		return fmt.Errorf("record %q: type and id must be UTF-8 without NUL bytes", k.String())
	}
	return nil
}

func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// pgVersion converts a version for a bigint column.
func pgVersion(v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("version %d is above 2^63-1", v)
	}
	return int64(v), nil
}

// retryable reports whether a transaction failed in a way that running
// it again can cure.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01" // serialization_failure, deadlock_detected
	}
	return false
}

// querier is what reads need of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
