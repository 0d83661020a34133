package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrationLock is the pg_advisory_xact_lock key that serializes schema
// migrations of instances starting at once ("synkfs" in ASCII).
const migrationLock = 0x73796e6b6673

// migrations[i] brings the schema from version i to i+1. They run in one
// transaction under migrationLock; synkfs_schema records how many ran.
// Append only: a released migration never changes.
var migrations = []func(ctx context.Context, tx pgx.Tx) error{
	migrate1,
}

// migrate1 makes the tables of the package doc.
func migrate1(ctx context.Context, tx pgx.Tx) error {
	const ddl = `
CREATE TABLE synkfs_head (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	epoch     text   NOT NULL,
	version   bigint NOT NULL DEFAULT 0,
	floor     bigint NOT NULL DEFAULT 0,
	live      bigint NOT NULL DEFAULT 0
);
CREATE TABLE synkfs_records (
	type       text COLLATE "C" NOT NULL,
	id         text COLLATE "C" NOT NULL,
	version    bigint  NOT NULL,
	deleted    boolean NOT NULL,
	deleted_at timestamptz,
	raw        bytea,
	body       jsonb,
	PRIMARY KEY (type, id),
	CHECK (deleted = (raw IS NULL)),
	CHECK (deleted = (deleted_at IS NOT NULL))
);
CREATE INDEX synkfs_records_version ON synkfs_records (version, type, id);
CREATE INDEX synkfs_records_tombstones ON synkfs_records (deleted_at) WHERE deleted;
CREATE TABLE synkfs_meta (
	key   text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL
);
CREATE FUNCTION synkfs_jsonb(raw bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	RETURN convert_from(raw, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
	RETURN NULL;
END
$$;
`
	if _, err := tx.Exec(ctx, ddl); err != nil {
		return err
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	_, err := tx.Exec(ctx, `INSERT INTO synkfs_head (epoch) VALUES ($1)`, hex.EncodeToString(b[:]))
	return err
}

// migrate brings the database's schema up to date. Two instances starting
// at once both take the advisory lock: the second waits, then finds the
// work done.
func migrate(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS synkfs_schema (version int NOT NULL)`); err != nil {
		return err
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM synkfs_schema`).Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("the database's schema is at version %d, newer than this program knows (%d)", have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		if err := migrations[i](ctx, tx); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if have < len(migrations) {
		if _, err := tx.Exec(ctx, `DELETE FROM synkfs_schema`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO synkfs_schema (version) VALUES ($1)`, len(migrations)); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}
