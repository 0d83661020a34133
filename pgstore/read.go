package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/synkfs/synkfs"
)

// getRecord reads the live record k through q.
func getRecord(ctx context.Context, q querier, k synkfs.Key) (synkfs.Record, error) {
	var v int64
	var raw []byte
	err := q.QueryRow(ctx, `SELECT version, raw FROM synkfs_records WHERE type = $1 AND id = $2 AND NOT deleted`, k.Type, k.ID).Scan(&v, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrNotFound)
	}
	if err != nil {
		return synkfs.Record{}, err
	}
	return synkfs.Record{Key: k, Version: uint64(v), Body: raw}, nil
}

// lookup reads what q knows of k, without the body.
func lookup(ctx context.Context, q querier, k synkfs.Key) (synkfs.Change, bool, error) {
	var v int64
	var deleted bool
	var at *time.Time
	err := q.QueryRow(ctx, `SELECT version, deleted, deleted_at FROM synkfs_records WHERE type = $1 AND id = $2`, k.Type, k.ID).Scan(&v, &deleted, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return synkfs.Change{}, false, nil
	}
	if err != nil {
		return synkfs.Change{}, false, err
	}
	c := synkfs.Change{Record: synkfs.Record{Key: k, Version: uint64(v)}, Deleted: deleted}
	if at != nil {
		c.Time = *at
	}
	return c, true, nil
}

// meta reads a metadata value through q.
func meta(ctx context.Context, q querier, key string) ([]byte, bool, error) {
	var v []byte
	err := q.QueryRow(ctx, `SELECT value FROM synkfs_meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Get returns the live record with key k, its body exactly as written.
func (s *Store) Get(k synkfs.Key) (synkfs.Record, error) {
	if err := s.check("get " + k.String()); err != nil {
		return synkfs.Record{}, err
	}
	if !validText(k.Type) || !validText(k.ID) {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrNotFound)
	}
	r, err := getRecord(s.ctx, s.pool, k)
	if err != nil && !errors.Is(err, synkfs.ErrNotFound) {
		return r, s.wrap(err, "get %s", k)
	}
	return r, err
}

// Lookup returns the version of k and whether it is a tombstone. A
// database error reads as "unknown" (ok false); servers read inside
// Commit, whose View reports errors.
func (s *Store) Lookup(k synkfs.Key) (synkfs.Change, bool) {
	if s.check("lookup") != nil || !validText(k.Type) || !validText(k.ID) {
		return synkfs.Change{}, false
	}
	c, ok, err := lookup(s.ctx, s.pool, k)
	if err != nil {
		return synkfs.Change{}, false
	}
	return c, ok
}

// Meta returns the value of a metadata key (ok false on a database error).
func (s *Store) Meta(key string) ([]byte, bool) {
	if s.check("meta") != nil || !validText(key) {
		return nil, false
	}
	v, ok, err := meta(s.ctx, s.pool, key)
	if err != nil {
		return nil, false
	}
	return v, ok
}

// Since calls fn for every record and tombstone above v, in ascending
// version order (then key order within a version). It reads Options.
// PageSize rows per query and calls fn between queries with no
// connection held, so fn may call back into the store. Each page reads
// the latest committed state: a key rewritten while Since runs may be
// reported again at its new version.
func (s *Store) Since(v uint64, fn func(synkfs.Change) error) error {
	if err := s.check(fmt.Sprintf("since %d", v)); err != nil {
		return err
	}
	from, err := pgVersion(v)
	if err != nil {
		return fmt.Errorf("since %d: %w", v, err)
	}
	var (
		after   synkfs.Key
		started bool
		page    []synkfs.Change
	)
	for {
		var rows pgx.Rows
		if !started {
			rows, err = s.pool.Query(s.ctx, `SELECT type, id, version, deleted, deleted_at, raw FROM synkfs_records
				WHERE version > $1 ORDER BY version, type, id LIMIT $2`, from, s.opts.PageSize)
		} else {
			rows, err = s.pool.Query(s.ctx, `SELECT type, id, version, deleted, deleted_at, raw FROM synkfs_records
				WHERE (version, type, id) > ($1, $2, $3) ORDER BY version, type, id LIMIT $4`, from, after.Type, after.ID, s.opts.PageSize)
		}
		if err != nil {
			return s.wrap(err, "since %d", v)
		}
		page = page[:0]
		for rows.Next() {
			var c synkfs.Change
			var ver int64
			var at *time.Time
			var raw []byte
			if err := rows.Scan(&c.Type, &c.ID, &ver, &c.Deleted, &at, &raw); err != nil {
				rows.Close()
				return s.wrap(err, "since %d", v)
			}
			c.Version = uint64(ver)
			if at != nil {
				c.Time = *at
			}
			if !c.Deleted {
				c.Body = raw
			}
			page = append(page, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.wrap(err, "since %d", v)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		if len(page) < s.opts.PageSize {
			return nil
		}
		last := page[len(page)-1]
		started, from, after = true, int64(last.Version), last.Key
	}
}

// Scan returns up to limit live records with keys after `after`, in key
// order (bytes, as synkfs.Key.Compare orders them).
func (s *Store) Scan(after synkfs.Key, limit int) ([]synkfs.Record, error) {
	if err := s.check("scan after " + after.String()); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(s.ctx, `SELECT type, id, version, raw FROM synkfs_records
		WHERE (type, id) > ($1, $2) AND NOT deleted ORDER BY type, id LIMIT $3`, after.Type, after.ID, limit)
	if err != nil {
		return nil, s.wrap(err, "scan after %s", after)
	}
	defer rows.Close()
	var out []synkfs.Record
	for rows.Next() {
		var r synkfs.Record
		var v int64
		if err := rows.Scan(&r.Type, &r.ID, &v, &r.Body); err != nil {
			return nil, s.wrap(err, "scan after %s", after)
		}
		r.Version = uint64(v)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "scan after %s", after)
	}
	return out, nil
}

func isNotFound(err error) bool { return errors.Is(err, synkfs.ErrNotFound) }
