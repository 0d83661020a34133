package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/synkfs/synkfs"
)

// WatchApplicationName is the application_name of Watch's listener
// connections, as pg_stat_activity shows them.
const WatchApplicationName = "synkfs watch"

// Backoff bounds of Watch's reconnects.
const (
	watchMinBackoff = 50 * time.Millisecond
	watchMaxBackoff = 5 * time.Second
)

// Watch calls fn with the store's version after each batch that another
// Store (another instance, or another Store value in this process)
// commits, until ctx ends or the store is closed; it returns ctx's error
// (or an error wrapping synkfs.ErrClosed). It keeps one connection of its
// own, outside the pool, that LISTENs on Options.Channel.
//
// fn is also called once with the version read right after each LISTEN
// takes effect: when Watch starts, and after each reconnect (a lost
// connection, with backoff from 50ms to 5s), since commits may have been
// missed meanwhile. Calls to fn are sequential, from Watch's goroutine;
// versions may be skipped or repeated, and are never announced before
// they are readable (PostgreSQL delivers a notification after its
// transaction commits). Commits of this Store itself are not announced.
//
// Watch returns an error at once when its first connection fails.
//
// A server runs one Watch for its life and, on each call, reads Since
// its last announced version and fans out what it finds, exactly as
// after a commit of its own.
func (s *Store) Watch(ctx context.Context, fn func(version uint64)) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return fmt.Errorf("watch: %w", synkfs.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close ends the watch
	defer stop()

	conn, err := s.listen(ctx, fn)
	if err != nil {
		if s.closed.Load() {
			return s.wrap(err, "watch")
		}
		return fmt.Errorf("watch: %w", err)
	}
	backoff := watchMinBackoff
	for {
		if conn != nil {
			err = s.receive(ctx, conn, fn)
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil {
				break
			}
			backoff = watchMinBackoff
			_ = err // the link is lost: reconnect below
		}
		// Full jitter over [backoff/2, backoff).
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)))
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(2*backoff, watchMaxBackoff)
		conn, _ = s.listen(ctx, fn) // on failure, try again after the backoff
	}
	if s.closed.Load() {
		return fmt.Errorf("watch: %w", synkfs.ErrClosed)
	}
	return ctx.Err()
}

// listen opens the listener connection, LISTENs, and announces the
// version it reads after that.
func (s *Store) listen(ctx context.Context, fn func(uint64)) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = WatchApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var v int64
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.opts.Channel}.Sanitize())
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT version FROM synkfs_head`).Scan(&v)
	}
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	storeMax(&s.lastVersion, uint64(v))
	fn(uint64(v))
	return conn, nil
}

// receive calls fn for each notification on conn until conn fails or
// ctx ends.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn, fn func(uint64)) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		v, from, ok := parseNotice(n.Payload)
		if !ok || from == s.instance {
			continue // our own commit, or not a commit notice
		}
		storeMax(&s.lastVersion, v) // committed: Version never answers below it
		fn(v)
	}
}

// notice is the payload of a commit's notification: its version and the
// instance tag of the Store that committed it.
func notice(version uint64, instance string) string {
	return strconv.FormatUint(version, 10) + " " + instance
}

// parseNotice reads a payload made by notice; ok is false for anything
// else sent on the channel.
func parseNotice(payload string) (version uint64, instance string, ok bool) {
	ver, instance, found := strings.Cut(payload, " ")
	if !found || instance == "" {
		return 0, "", false
	}
	v, err := strconv.ParseUint(ver, 10, 64)
	if err != nil || strconv.FormatUint(v, 10) != ver {
		return 0, "", false
	}
	return v, instance, true
}
