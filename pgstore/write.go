package pgstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/synkfs/synkfs"
)

// inTx runs one write transaction of the package doc, in two round trips
// besides fn's reads: BEGIN and the head lock are sent together, then
// the statements fn queues are sent together with COMMIT. fn gets the
// connection (to read through) and the version the head held when
// locked; it queues nothing to commit nothing. After a serialization
// failure or a deadlock the transaction runs again, fn included, up to
// Options.Retries times.
func (s *Store) inTx(ctx context.Context, fn func(c *pgxpool.Conn, cur uint64, q *pgx.Batch) error) error {
	for attempt := 0; ; attempt++ {
		err := s.txOnce(ctx, fn)
		if err == nil || !retryable(err) || attempt >= s.opts.Retries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
}

func (s *Store) txOnce(ctx context.Context, fn func(c *pgxpool.Conn, cur uint64, q *pgx.Batch) error) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			// Left inside the transaction by an error: roll back, or
			// drop the connection when even that fails.
			if _, rerr := conn.Exec(context.Background(), "ROLLBACK"); rerr != nil {
				_ = conn.Conn().Close(context.Background())
			}
		}
		conn.Release()
	}()
	var start pgx.Batch
	start.Queue("BEGIN ISOLATION LEVEL READ COMMITTED") // whatever the database default: see the package doc
	var v int64
	start.Queue(`SELECT version FROM synkfs_head FOR UPDATE`).QueryRow(func(row pgx.Row) error { return row.Scan(&v) })
	if err := conn.SendBatch(ctx, &start).Close(); err != nil {
		return fmt.Errorf("lock head: %w", err)
	}
	var q pgx.Batch
	if err := fn(conn, uint64(v), &q); err != nil {
		return err
	}
	if q.Len() == 0 {
		_, err := conn.Exec(ctx, "ROLLBACK")
		return err
	}
	q.Queue("COMMIT")
	return conn.SendBatch(ctx, &q).Close()
}

// Apply commits b in one transaction holding the head lock. It returns
// ErrStaleVersion when b.Version is below the version in the database.
//
// Apply keeps the synkfs.Store contract (records at any version up to
// b.Version, the head set to b.Version). With several writers, choosing
// an absolute version before the transaction is racy by nature: servers
// that share a database write through Commit instead.
func (s *Store) Apply(ctx context.Context, b synkfs.Batch) error {
	if err := s.check(fmt.Sprintf("apply batch %d", b.Version)); err != nil {
		return err
	}
	w, err := prepare(b)
	if err != nil {
		return fmt.Errorf("apply batch %d: %w", b.Version, err)
	}
	err = s.inTx(ctx, func(_ *pgxpool.Conn, cur uint64, q *pgx.Batch) error {
		if b.Version < cur {
			return fmt.Errorf("onto version %d: %w", cur, synkfs.ErrStaleVersion)
		}
		s.queueWrite(q, cur, w)
		return nil
	})
	if err != nil {
		return s.wrap(err, "apply batch %d", b.Version)
	}
	storeMax(&s.lastVersion, b.Version) // so a failed head read never answers below it
	return nil
}

// Commit runs fn with a View of the store at its latest version, holding
// the head lock in a transaction, and commits the batch fn returns in the
// same transaction (see synkfs.Committer). The batch's Version must be
// the view's Version()+1, with every put and delete at that version, or
// the view's Version() with metadata only; anything else returns
// ErrStaleVersion. As with any database, an error from the final round
// trip (the link lost at COMMIT) leaves it unknown whether the batch
// committed; a server's batch table, written in the same Commit, makes
// the client's resend safe. An error from fn (or from a read of the View, even one
// fn ignored), or an empty batch, commits nothing. After a serialization
// failure or a deadlock, Commit runs the transaction again, fn included,
// up to Options.Retries times.
func (s *Store) Commit(ctx context.Context, fn func(synkfs.View) (synkfs.Batch, error)) error {
	if err := s.check("commit"); err != nil {
		return err
	}
	var committed uint64 // the batch's version, once queued (the last run's)
	err := s.inTx(ctx, func(conn *pgxpool.Conn, cur uint64, q *pgx.Batch) error {
		committed = 0
		v := &view{ctx: ctx, q: conn, version: cur}
		b, err := fn(v)
		if v.err != nil {
			return fmt.Errorf("read in commit: %w", v.err)
		}
		if err != nil {
			return err
		}
		if b.Empty() {
			return nil
		}
		switch {
		case b.Version == cur+1:
			for _, r := range b.Puts {
				if r.Version != b.Version {
					return fmt.Errorf("batch %d puts %s at version %d: %w", b.Version, r.Key, r.Version, synkfs.ErrStaleVersion)
				}
			}
			for _, d := range b.Deletes {
				if d.Version != b.Version {
					return fmt.Errorf("batch %d deletes %s at version %d: %w", b.Version, d.Key, d.Version, synkfs.ErrStaleVersion)
				}
			}
		case b.Version == cur && len(b.Puts) == 0 && len(b.Deletes) == 0:
		default:
			return fmt.Errorf("batch %d onto version %d: %w", b.Version, cur, synkfs.ErrStaleVersion)
		}
		w, err := prepare(b)
		if err != nil {
			return err
		}
		s.queueWrite(q, cur, w)
		committed = b.Version
		return nil
	})
	if err != nil {
		return s.wrap(err, "commit")
	}
	storeMax(&s.lastVersion, committed) // so a failed head read never answers below it
	return nil
}

// prepared is a batch checked and laid out as the columns of the bulk
// statements.
type prepared struct {
	version   int64
	types     []string
	ids       []string
	versions  []int64
	deleted   []bool
	raws      [][]byte
	plain     []bool // raw can be cast to jsonb without a check
	puts      int64  // live records among the rows
	metaKeys  []string
	metaVals  [][]byte
	metaDrops []string
}

// prepare checks b and lays it out. A key named more than once ends as
// the last of its puts, then deletes (as memstore applies them).
func prepare(b synkfs.Batch) (*prepared, error) {
	v, err := pgVersion(b.Version)
	if err != nil {
		return nil, err
	}
	w := &prepared{version: v}
	idx := make(map[synkfs.Key]int, len(b.Puts)+len(b.Deletes))
	add := func(k synkfs.Key, ver uint64, deleted bool, body []byte) error {
		if err := k.Validate(); err != nil {
			return err
		}
		if !validText(k.Type) || !validText(k.ID) {
			return fmt.Errorf("record %q: type and id must be UTF-8 without NUL bytes", k.String())
		}
		pv, err := pgVersion(ver)
		if err != nil {
			return fmt.Errorf("record %s: %w", k, err)
		}
		var raw []byte
		plain := false
		if !deleted {
			raw = bytes.Clone(body)
			if len(bytes.TrimSpace(raw)) == 0 {
				raw = []byte("{}") // a nil body is the empty object
			}
			plain = jsonbSafe(raw)
		}
		i, ok := idx[k]
		if !ok {
			i = len(w.types)
			idx[k] = i
			w.types, w.ids = append(w.types, k.Type), append(w.ids, k.ID)
			w.versions, w.deleted = append(w.versions, 0), append(w.deleted, false)
			w.raws, w.plain = append(w.raws, nil), append(w.plain, false)
		}
		w.versions[i], w.deleted[i], w.raws[i], w.plain[i] = pv, deleted, raw, plain
		return nil
	}
	for _, r := range b.Puts {
		if err := add(r.Key, r.Version, false, r.Body); err != nil {
			return nil, err
		}
	}
	for _, d := range b.Deletes {
		if err := add(d.Key, d.Version, true, nil); err != nil {
			return nil, err
		}
	}
	for _, d := range w.deleted {
		if !d {
			w.puts++
		}
	}
	for k, val := range b.Meta {
		if !validText(k) {
			return nil, fmt.Errorf("metadata key %q: must be UTF-8 without NUL bytes", k)
		}
		if val == nil {
			w.metaDrops = append(w.metaDrops, k)
		} else {
			w.metaKeys, w.metaVals = append(w.metaKeys, k), append(w.metaVals, bytes.Clone(val))
		}
	}
	return w, nil
}

// jsonbSafe reports whether PostgreSQL surely accepts raw as jsonb: valid
// JSON in UTF-8, no \u0000 (jsonb refuses it) and no exponent of four
// digits or more (numeric's range). Bodies it doubts take the slower
// synkfs_jsonb path, which yields NULL instead of failing the batch.
func jsonbSafe(raw []byte) bool {
	if !utf8.Valid(raw) || !json.Valid(raw) || bytes.Contains(raw, []byte(`\u0000`)) {
		return false
	}
	for i := 1; i < len(raw); i++ {
		if (raw[i] == 'e' || raw[i] == 'E') && raw[i-1] >= '0' && raw[i-1] <= '9' {
			j := i + 1
			if j < len(raw) && (raw[j] == '+' || raw[j] == '-') {
				j++
			}
			n := 0
			for ; j < len(raw) && raw[j] >= '0' && raw[j] <= '9'; j++ {
				n++
			}
			if n >= 4 {
				return false
			}
		}
	}
	return true
}

// upsertSQL writes every row of a batch and moves the head in one
// statement. The CTEs share one snapshot, so "old" counts the live
// records among the batch's keys as they were before the insert.
const upsertSQL = `
WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bool[], $5::bytea[], $6::bool[])
		AS i(type, id, version, deleted, raw, plain)
), old AS (
	SELECT count(*) AS n FROM synkfs_records r JOIN input i ON r.type = i.type AND r.id = i.id WHERE NOT r.deleted
), up AS (
	INSERT INTO synkfs_records AS r (type, id, version, deleted, deleted_at, raw, body)
	SELECT type, id, version, deleted, CASE WHEN deleted THEN $7::timestamptz END, raw,
		CASE WHEN deleted THEN NULL WHEN plain THEN convert_from(raw, 'UTF8')::jsonb ELSE synkfs_jsonb(raw) END
	FROM input
	ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,
		deleted_at = excluded.deleted_at, raw = excluded.raw, body = excluded.body
)
UPDATE synkfs_head SET version = $8, live = live + $9 - (SELECT n FROM old)`

// queueWrite queues the statements that write w, in a transaction that
// holds the head lock at version cur.
func (s *Store) queueWrite(q *pgx.Batch, cur uint64, w *prepared) {
	if len(w.types) > 0 {
		q.Queue(upsertSQL, w.types, w.ids, w.versions, w.deleted, w.raws, w.plain, time.Now(), w.version, w.puts)
	} else if uint64(w.version) != cur {
		q.Queue(`UPDATE synkfs_head SET version = $1`, w.version)
	}
	if len(w.metaKeys) > 0 {
		q.Queue(`INSERT INTO synkfs_meta (key, value) SELECT * FROM unnest($1::text[], $2::bytea[])
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, w.metaKeys, w.metaVals)
	}
	if len(w.metaDrops) > 0 {
		q.Queue(`DELETE FROM synkfs_meta WHERE key = ANY($1::text[])`, w.metaDrops)
	}
	if len(w.types) > 0 || uint64(w.version) != cur {
		q.Queue(`SELECT pg_notify($1, $2)`, s.opts.Channel, notice(uint64(w.version), s.instance))
	}
}

// Compact drops tombstones written before t and raises the floor to the
// highest version dropped, in one transaction holding the head lock.
func (s *Store) Compact(ctx context.Context, before time.Time) error {
	if err := s.check("compact"); err != nil {
		return err
	}
	err := s.inTx(ctx, func(_ *pgxpool.Conn, _ uint64, q *pgx.Batch) error {
		q.Queue(`
WITH d AS (
	DELETE FROM synkfs_records WHERE deleted AND deleted_at < $1 RETURNING version
)
UPDATE synkfs_head SET floor = greatest(floor, coalesce((SELECT max(version) FROM d), 0))`, before)
		return nil
	})
	if err != nil {
		return s.wrap(err, "compact")
	}
	return nil
}

// view is the synkfs.View of a Commit: reads through its transaction,
// which holds the head lock. The first read error is kept and fails the
// Commit.
type view struct {
	ctx     context.Context
	q       querier // the connection inside the transaction
	version uint64
	err     error
	known   map[synkfs.Key]lookupResult // filled by Preload
}

type lookupResult struct {
	c  synkfs.Change
	ok bool
}

func (v *view) fail(err error) {
	if v.err == nil {
		v.err = err
	}
}

func (v *view) Version() uint64 { return v.version }

func (v *view) Get(k synkfs.Key) (synkfs.Record, error) {
	if !validText(k.Type) || !validText(k.ID) {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrNotFound)
	}
	r, err := getRecord(v.ctx, v.q, k)
	if err != nil && !isNotFound(err) {
		v.fail(err)
	}
	return r, err
}

func (v *view) Lookup(k synkfs.Key) (synkfs.Change, bool) {
	if !validText(k.Type) || !validText(k.ID) {
		return synkfs.Change{}, false
	}
	if r, ok := v.known[k]; ok {
		return r.c, r.ok
	}
	c, ok, err := lookup(v.ctx, v.q, k)
	if err != nil {
		v.fail(err)
	}
	return c, ok
}

func (v *view) Meta(key string) ([]byte, bool) {
	if !validText(key) {
		return nil, false
	}
	val, ok, err := meta(v.ctx, v.q, key)
	if err != nil {
		v.fail(err)
	}
	return val, ok
}

// Preloader is implemented by the View that Commit passes to fn. Preload
// reads what Lookup returns for many keys in one query; later Lookups of
// those keys answer from memory. A server that checks every record of a
// large batch calls it first, instead of one round trip per record.
type Preloader interface {
	Preload(keys []synkfs.Key) error
}

var _ Preloader = (*view)(nil)

// Preload reads the Lookup answers of keys in one query. They stay true
// for the rest of the Commit: no writer can change a record while the
// head lock is held.
func (v *view) Preload(keys []synkfs.Key) error {
	types := make([]string, 0, len(keys))
	ids := make([]string, 0, len(keys))
	if v.known == nil {
		v.known = make(map[synkfs.Key]lookupResult, len(keys))
	}
	for _, k := range keys {
		if validText(k.Type) && validText(k.ID) {
			types, ids = append(types, k.Type), append(ids, k.ID)
			v.known[k] = lookupResult{}
		}
	}
	rows, err := v.q.Query(v.ctx, `SELECT r.type, r.id, r.version, r.deleted, r.deleted_at
		FROM synkfs_records r JOIN unnest($1::text[], $2::text[]) AS k(type, id) ON r.type = k.type AND r.id = k.id`, types, ids)
	if err != nil {
		v.fail(err)
		return fmt.Errorf("preload: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c synkfs.Change
		var ver int64
		var at *time.Time
		if err := rows.Scan(&c.Type, &c.ID, &ver, &c.Deleted, &at); err != nil {
			v.fail(err)
			return fmt.Errorf("preload: %w", err)
		}
		c.Version = uint64(ver)
		if at != nil {
			c.Time = *at
		}
		v.known[c.Key] = lookupResult{c, true}
	}
	if err := rows.Err(); err != nil {
		v.fail(err)
		return fmt.Errorf("preload: %w", err)
	}
	return nil
}
