package scylla

import (
	"context"
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
		// Store-wide settings fixed at creation (bucket_size). Written only
		// by lightweight transactions.
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
		// Chat metadata: written once, by a lightweight transaction.
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

// migrate applies the migrations not yet recorded in schema_version, then
// records and checks the bucket size.
func migrate(ctx context.Context, sess *gocql.Session, cfg Config) (applied int, err error) {
	if err := sess.Query(createVersionTable).WithContext(ctx).Exec(); err != nil {
		return 0, fmt.Errorf("cannot create table schema_version: %w", err)
	}
	done := map[int]bool{}
	iter := sess.Query(selectVersions).WithContext(ctx).Iter()
	var id int
	for iter.Scan(&id) {
		done[id] = true
	}
	if err := iter.Close(); err != nil {
		return 0, fmt.Errorf("cannot read schema versions: %w", err)
	}
	for _, m := range migrations {
		if done[m.id] {
			continue
		}
		for _, stmt := range m.stmts {
			if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
				return applied, fmt.Errorf("cannot apply migration %d: %w", m.id, err)
			}
		}
		if err := sess.AwaitSchemaAgreement(ctx); err != nil {
			return applied, fmt.Errorf("cannot agree on schema after migration %d: %w", m.id, err)
		}
		if err := sess.Query(insertVersion, m.id, m.description, time.Now()).WithContext(ctx).Exec(); err != nil {
			return applied, fmt.Errorf("cannot record migration %d: %w", m.id, err)
		}
		applied++
	}
	// The bucket size is part of the data layout: the first Open records
	// it, later ones must agree.
	want := strconv.FormatUint(cfg.BucketSize, 10)
	existing := map[string]any{}
	ok, err := sess.Query(insertSetting, "bucket_size", want).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		return applied, fmt.Errorf("cannot record bucket size: %w", err)
	}
	if !ok {
		var got string
		if err := sess.Query(selectSetting, "bucket_size").WithContext(ctx).Scan(&got); err != nil {
			return applied, fmt.Errorf("cannot read bucket size: %w", err)
		}
		if got != want {
			return applied, fmt.Errorf("cannot use bucket_size %s: keyspace %s was created with %s, and it must never change", want, cfg.Keyspace, got)
		}
	}
	return applied, nil
}
