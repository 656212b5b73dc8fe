package scylla

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gocql/gocql"
)

// migration is one schema step. Steps are append-only: never edit an applied
// one, add a new step instead. Every statement must be idempotent (IF NOT
// EXISTS) because a crash between a step's statements and its
// schema_version row replays the whole step.
type migration struct {
	id          int
	description string
	stmts       []string
}

// migrations is the schema, documented in doc.go. Valid CQL for Cassandra 4+
// and ScyllaDB 5+.
var migrations = []migration{{
	id:          1,
	description: "messages, chats, membership, markers, cursors, dedup",
	stmts: []string{
		// Store-wide settings fixed at creation (bucket_size, sequencing,
		// slots, legacy_dedup_until). Written only by lightweight
		// transactions.
		`CREATE TABLE IF NOT EXISTS settings (
			name text PRIMARY KEY,
			value text)`,
		// Messages: one partition per (chat, bucket = seq / bucket_size),
		// newest first. Rows are written and deleted only by lightweight
		// transactions; wid is the id of the AppendMessages call that
		// wrote the row.
		`CREATE TABLE IF NOT EXISTS messages (
			chat_id text,
			bucket bigint,
			seq bigint,
			sender text,
			device text,
			request_id text,
			ts bigint,
			kind tinyint,
			body blob,
			wid uuid,
			PRIMARY KEY ((chat_id, bucket), seq))
			WITH CLUSTERING ORDER BY (seq DESC)`,
		// Every bucket a chat has (or had an attempted write in), newest
		// first: LastSeq and history pages walk it. Plain writes only,
		// never deleted.
		`CREATE TABLE IF NOT EXISTS chat_buckets (
			chat_id text,
			bucket bigint,
			PRIMARY KEY (chat_id, bucket))
			WITH CLUSTERING ORDER BY (bucket DESC)`,
		// Idempotency keys, written with USING TTL after the message rows.
		`CREATE TABLE IF NOT EXISTS dedup (
			chat_id text,
			sender text,
			request_id text,
			seq bigint,
			PRIMARY KEY ((chat_id, sender, request_id)))`,
		// Chat metadata: a group's written once, by a lightweight
		// transaction; a direct chat's by a plain write (CreateChat).
		`CREATE TABLE IF NOT EXISTS chats (
			chat_id text PRIMARY KEY,
			kind tinyint,
			name text,
			created_by text,
			created_at bigint,
			wid uuid)`,
		`CREATE TABLE IF NOT EXISTS chat_members (
			chat_id text,
			user_id text,
			PRIMARY KEY (chat_id, user_id))`,
		`CREATE TABLE IF NOT EXISTS user_chats (
			user_id text,
			chat_id text,
			PRIMARY KEY (user_id, chat_id))`,
		// Monotonic markers: written USING TIMESTAMP <seq>, so the highest
		// seq wins whatever the arrival order.
		`CREATE TABLE IF NOT EXISTS read_markers (
			user_id text,
			chat_id text,
			seq bigint,
			PRIMARY KEY (user_id, chat_id))`,
		`CREATE TABLE IF NOT EXISTS device_cursors (
			user_id text,
			device text,
			chat_id text,
			seq bigint,
			PRIMARY KEY ((user_id, device), chat_id))`,
		`CREATE TABLE IF NOT EXISTS chat_cursors (
			chat_id text,
			user_id text,
			device text,
			seq bigint,
			PRIMARY KEY (chat_id, user_id, device))`,
	},
}, {
	id:          2,
	description: "push subscriptions and the push ledger",
	stmts: []string{
		// One Web Push subscription per (user, device). Plain writes only
		// (an INSERT of every column replaces, DELETE removes).
		`CREATE TABLE IF NOT EXISTS push_subscriptions (
			user_id text,
			device text,
			endpoint text,
			p256dh text,
			auth text,
			created_at bigint,
			PRIMARY KEY (user_id, device))`,
		// The push ledger: a row per pushed (chat, seq, user, device) key,
		// written only by INSERT ... IF NOT EXISTS USING TTL, never by a
		// plain write or delete, so Paxos and timestamp orderings never
		// mix on its cells. wid makes a driver retry of our own applied
		// transaction count as applied.
		`CREATE TABLE IF NOT EXISTS push_ledger (
			key text PRIMARY KEY,
			wid uuid)`,
	},
}, {
	id:          3,
	description: "dedup keys by chat, slot leases, compaction per table",
	stmts: []string{
		// Idempotency keys, one partition per chat so that a sequencer
		// loads a chat's keys into a filter (DedupKeys). TTL only, never
		// deleted: time-window compaction drops whole expired SSTables, and
		// expired cells need no tombstone to reach other replicas, so
		// gc_grace_seconds can be short.
		`CREATE TABLE IF NOT EXISTS dedup_keys (
			chat_id text,
			sender text,
			request_id text,
			seq bigint,
			PRIMARY KEY (chat_id, sender, request_id))
			WITH compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}
			AND gc_grace_seconds = 3600`,
		// Slot leases (lease sequencing): one partition, every write a
		// lightweight transaction (lease.go).
		`CREATE TABLE IF NOT EXISTS leases (
			grp int,
			slot int,
			owner text,
			epoch bigint,
			version bigint,
			PRIMARY KEY (grp, slot))`,
		// The push ledger is TTL only as well.
		`ALTER TABLE push_ledger WITH compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}
			AND gc_grace_seconds = 3600`,
	},
}, {
	id: 4,
	// No DDL: dedup_keys.request_id becomes "device/request-id"
	// (record.DedupKey.Stored). A keyspace that existed before records
	// unscoped_dedup_until, when its bare-id keys have expired.
	description: "dedup keys scoped per device",
}, {
	id:          5,
	description: "user settings",
	stmts: []string{
		// One row per user who changed a setting; every write sets every
		// column (PutUserSettings).
		`CREATE TABLE IF NOT EXISTS user_settings (
			user_id text PRIMARY KEY,
			hide_last_seen boolean)`,
	},
}, {
	id:          6,
	description: "member roles",
	stmts: []string{
		// A member's role and join seq, beside its chat_members row and
		// written in the same logged batch (a table of its own rather than
		// columns of chat_members: CREATE ... IF NOT EXISTS can be replayed,
		// ALTER TABLE ADD cannot). A member without a row here is one from
		// before roles (RoleUnset).
		`CREATE TABLE IF NOT EXISTS chat_roles (
			chat_id text,
			user_id text,
			role tinyint,
			joined bigint,
			PRIMARY KEY (chat_id, user_id))`,
	},
}}

const (
	createVersionTable = `CREATE TABLE IF NOT EXISTS schema_version (
		id int PRIMARY KEY,
		description text,
		applied_at timestamp)`
	selectVersions = `SELECT id FROM schema_version`
	insertVersion  = `INSERT INTO schema_version (id, description, applied_at) VALUES (?, ?, ?)`

	insertSetting = `INSERT INTO settings (name, value) VALUES (?, ?) IF NOT EXISTS`
	selectSetting = `SELECT value FROM settings WHERE name = ?`
)

// createKeyspace creates the keyspace if missing, on a session without a
// keyspace.
func createKeyspace(ctx context.Context, sess *gocql.Session, cfg Config) error {
	stmt := fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s",
		cfg.Keyspace, cfg.Replication.replicationCQL())
	if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cannot create keyspace %s: %w", cfg.Keyspace, err)
	}
	if err := sess.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("cannot agree on schema of keyspace %s: %w", cfg.Keyspace, err)
	}
	return nil
}

// schemaInfo is what migrate learnt about the keyspace.
type schemaInfo struct {
	applied int // migrations applied by this call
	// legacyDedupUntil is when keys of the migration-1 dedup table expire:
	// until then LookupDedup falls back to it and DedupKeys is incomplete.
	// Zero for a keyspace created with migration 3.
	legacyDedupUntil time.Time
	// unscopedDedupUntil is when dedup keys written before keys were scoped
	// per device (migration 4) expire: until then LookupDedup falls back to
	// the bare request id. Zero for a keyspace created with migration 4.
	unscopedDedupUntil time.Time
}

// migrate applies the migrations not yet recorded in schema_version, then
// records and checks the settings fixed at creation: bucket size,
// sequencing mode and slot count.
func migrate(ctx context.Context, sess *gocql.Session, cfg Config) (info schemaInfo, err error) {
	if err := sess.Query(createVersionTable).WithContext(ctx).Exec(); err != nil {
		return info, fmt.Errorf("cannot create table schema_version: %w", err)
	}
	done := map[int]bool{}
	iter := sess.Query(selectVersions).WithContext(ctx).Iter()
	var id int
	for iter.Scan(&id) {
		done[id] = true
	}
	if err := iter.Close(); err != nil {
		return info, fmt.Errorf("cannot read schema versions: %w", err)
	}
	// A keyspace that existed before migration 3 holds data written by
	// lightweight transactions and dedup keys in the old table.
	legacy := done[1] && !done[3]
	// One that existed before migration 4 holds dedup keys not scoped per
	// device.
	unscoped := done[1] && !done[4]
	// What such a keyspace needs is recorded before the migrations that
	// mark it as migrated (settings are insert-if-absent, so an open that
	// died in between does it again): the settings table is migration 1's.
	if legacy {
		// Such a keyspace is LWT whatever the configuration asks (checked
		// below).
		if _, err := recordSetting(ctx, sess, "sequencing", SequencingLWT); err != nil {
			return info, err
		}
		until := time.Now().Add(cfg.DedupTTL).UnixMilli()
		if _, err := recordSetting(ctx, sess, "legacy_dedup_until", strconv.FormatInt(until, 10)); err != nil {
			return info, err
		}
	}
	if unscoped {
		until := time.Now().Add(cfg.DedupTTL).UnixMilli()
		if _, err := recordSetting(ctx, sess, "unscoped_dedup_until", strconv.FormatInt(until, 10)); err != nil {
			return info, err
		}
	}
	for _, m := range migrations {
		if done[m.id] {
			continue
		}
		for _, stmt := range m.stmts {
			if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
				return info, fmt.Errorf("cannot apply migration %d: %w", m.id, err)
			}
		}
		if err := sess.AwaitSchemaAgreement(ctx); err != nil {
			return info, fmt.Errorf("cannot agree on schema after migration %d: %w", m.id, err)
		}
		if err := sess.Query(insertVersion, m.id, m.description, time.Now()).WithContext(ctx).Exec(); err != nil {
			return info, fmt.Errorf("cannot record migration %d: %w", m.id, err)
		}
		info.applied++
	}
	// Settings are part of the data layout: the first Open records them,
	// later ones must agree.
	check := func(name, want, why string) error {
		got, err := recordSetting(ctx, sess, name, want)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("cannot use %s %s: keyspace %s was created with %s, %s", name, want, cfg.Keyspace, got, why)
		}
		return nil
	}
	if err := check("bucket_size", strconv.FormatUint(cfg.BucketSize, 10), "and it must never change"); err != nil {
		return info, err
	}
	mode := cfg.Sequencing
	if err := check("sequencing", mode, "and it can never change (a keyspace's rows are written in one mode; use a new keyspace for the other)"); err != nil {
		return info, err
	}
	if mode == SequencingLease {
		if err := check("slots", strconv.Itoa(cfg.Slots), "and it must never change"); err != nil {
			return info, err
		}
	}
	if info.legacyDedupUntil, err = readUntil(ctx, sess, "legacy_dedup_until"); err != nil {
		return info, err
	}
	if info.unscopedDedupUntil, err = readUntil(ctx, sess, "unscoped_dedup_until"); err != nil {
		return info, err
	}
	return info, nil
}

// readUntil reads a time setting (Unix milliseconds); zero when unset.
func readUntil(ctx context.Context, sess *gocql.Session, name string) (time.Time, error) {
	var until string
	err := sess.Query(selectSetting, name).WithContext(ctx).Scan(&until)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("cannot read setting %s: %w", name, err)
	}
	ms, err := strconv.ParseInt(until, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse setting %s %q: %w", name, until, err)
	}
	return time.UnixMilli(ms), nil
}

// recordSetting stores name=value unless name is set, and returns the
// stored value.
func recordSetting(ctx context.Context, sess *gocql.Session, name, value string) (string, error) {
	existing := map[string]any{}
	ok, err := sess.Query(insertSetting, name, value).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		return "", fmt.Errorf("cannot record setting %s: %w", name, err)
	}
	if ok {
		return value, nil
	}
	var got string
	if err := sess.Query(selectSetting, name).WithContext(ctx).Scan(&got); err != nil {
		return "", fmt.Errorf("cannot read setting %s: %w", name, err)
	}
	return got, nil
}
