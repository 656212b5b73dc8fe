package scylla

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
)

// Store is the CQL implementation of the storage contract
// (storage.Store, storage/contract.go). Every method is safe for concurrent use.
type Store struct {
	cfg        Config
	log        *slog.Logger
	sess       *gocql.Session
	bucketSize uint64
	dedupTTL   int                              // seconds
	spec       gocql.SpeculativeExecutionPolicy // nil when off
	lease      bool                             // sequencing under leases (Config.Sequencing)
	serial     gocql.Consistency                // of lightweight transactions and serial reads
	// legacyUntil: until then keys of the migration-1 dedup table may be
	// alive (schemaInfo.legacyDedupUntil); zero for none.
	legacyUntil time.Time
	// unscopedUntil: until then dedup keys not scoped per device may be
	// alive (schemaInfo.unscopedDedupUntil); zero for none.
	unscopedUntil time.Time
	// hookWritePart, when set (tests only), runs before a partition's rows
	// are written; an error it returns is the write's.
	hookWritePart func(ctx context.Context, p *part) error

	mu     sync.RWMutex // guards closed; read-held by every call in flight so Close waits for them
	closed bool

	bmu     sync.Mutex             // guards buckets
	buckets map[bucketKey]struct{} // chat buckets whose chat_buckets row this process has written
}

type bucketKey struct {
	chat   string
	bucket int64
}

// maxKnownBuckets bounds Store.buckets; the set is cleared when full (a
// forgotten bucket costs one idempotent rewrite of its marker).
const maxKnownBuckets = 1 << 16

// Open connects to the cluster, creates the keyspace and applies pending
// schema migrations, then returns a ready store. cfg is validated; zero
// fields take their defaults. log receives warnings (rollbacks, dangling
// rows); nil means slog.Default().
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot open cql store: %w", err)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "storage.scylla", "keyspace", cfg.Keyspace)

	// The keyspace must exist before a session can be bound to it. Host
	// policies cannot be shared between sessions: one cluster config each.
	cluster, err := newCluster(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot open cql store: %w", err)
	}
	boot, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cannot connect to cql hosts %v: %w", cfg.Hosts, err)
	}
	err = createKeyspace(ctx, boot, cfg)
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("cannot open cql store: %w", err)
	}
	cluster, _ = newCluster(cfg)
	cluster.Keyspace = cfg.Keyspace
	sess, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cannot connect to cql hosts %v: %w", cfg.Hosts, err)
	}
	start := time.Now()
	info, err := migrate(ctx, sess, cfg)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("cannot open cql store: %w", err)
	}
	if info.applied > 0 {
		log.Info("schema migrated", "migrations", info.applied, "took", time.Since(start))
	}
	serial, _ := parseSerial(cfg.SerialConsistency)
	s := &Store{
		cfg:           cfg,
		log:           log,
		sess:          sess,
		bucketSize:    cfg.BucketSize,
		dedupTTL:      int(cfg.DedupTTL / time.Second),
		buckets:       make(map[bucketKey]struct{}),
		lease:         cfg.Sequencing == SequencingLease,
		serial:        serial,
		legacyUntil:   info.legacyDedupUntil,
		unscopedUntil: info.unscopedDedupUntil,
	}
	if cfg.SpeculativeAttempts > 0 {
		s.spec = &gocql.SimpleSpeculativeExecution{NumAttempts: cfg.SpeculativeAttempts, TimeoutDelay: cfg.SpeculativeDelay}
	}
	return s, nil
}

func newCluster(cfg Config) (*gocql.ClusterConfig, error) {
	cons, err := parseConsistency(cfg.Consistency)
	if err != nil {
		return nil, err
	}
	serial, err := parseSerial(cfg.SerialConsistency)
	if err != nil {
		return nil, err
	}
	c := gocql.NewCluster(cfg.Hosts...)
	// The ScyllaDB driver takes the port of discovered nodes from
	// system.local/peers columns that Cassandra does not fill and falls back
	// to ClusterConfig.Port, so a cluster on a port other than 9042 needs it
	// set (Validate makes the hosts agree on one).
	port, err := hostsPort(cfg.Hosts)
	if err != nil {
		return nil, err
	}
	c.Port = port
	c.ProtoVersion = cfg.ProtoVersion
	c.Consistency = cons
	c.SerialConsistency = serial
	c.ConnectTimeout = cfg.ConnectTimeout
	c.Timeout = cfg.Timeout
	c.NumConns = cfg.NumConns
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	if cfg.Retries > 0 {
		c.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: cfg.Retries, Min: 50 * time.Millisecond, Max: time.Second}
	} else {
		c.RetryPolicy = nil
	}
	if cfg.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	return c, nil
}

// legacyDedup reports whether keys of the migration-1 dedup table may
// still be alive.
func (s *Store) legacyDedup() bool {
	return !s.legacyUntil.IsZero() && time.Now().Before(s.legacyUntil)
}

// unscopedDedup reports whether dedup keys not scoped per device may still
// be alive.
func (s *Store) unscopedDedup() bool {
	return !s.unscopedUntil.IsZero() && time.Now().Before(s.unscopedUntil)
}

// enter registers a call in flight; it fails with record.ErrClosed after
// Close. The caller must call s.mu.RUnlock when done.
func (s *Store) enter() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return record.ErrClosed
	}
	return nil
}

// Close waits for the calls in flight and closes the session. Later calls
// return record.ErrClosed; a second Close is a no-op. Safe for concurrent
// use.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.sess.Close()
	return nil
}

// read returns an idempotent read statement, speculated when configured.
func (s *Store) read(ctx context.Context, stmt string, args ...any) *gocql.Query {
	q := s.sess.Query(stmt, args...).WithContext(ctx).Idempotent(true)
	if s.spec != nil {
		q = q.SetSpeculativeExecutionPolicy(s.spec)
	}
	return q
}

// write returns a plain write statement. Every such write sets fixed
// values (see doc.go), so it is idempotent and the retry policy may resend
// it; writes are never speculated.
func (s *Store) write(ctx context.Context, stmt string, args ...any) *gocql.Query {
	return s.sess.Query(stmt, args...).WithContext(ctx).Idempotent(true)
}

// idempotentBatch is an unlogged batch whose statements the retry policy
// may resend: only plain writes of fixed values or fixed timestamps may go
// in it (dedup keys, lease-mode message rows, markers and cursors, a
// direct chat's member rows). Other
// batches are built with Batch.Query, whose entries the driver never
// retries.
type idempotentBatch struct{ *gocql.Batch }

func (s *Store) idempotentBatch(ctx context.Context) idempotentBatch {
	return idempotentBatch{s.sess.Batch(gocql.UnloggedBatch).WithContext(ctx)}
}

func (b idempotentBatch) add(stmt string, args ...any) {
	b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: stmt, Args: args, Idempotent: true})
}

// mapErr turns driver errors into the contract's sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gocql.ErrNotFound):
		return record.ErrNotFound
	case errors.Is(err, gocql.ErrSessionClosed):
		return record.ErrClosed
	}
	return err
}

// fanout runs fn(0..n-1) with at most cfg.Concurrency in flight and returns
// the errors by index (nil slice when all succeeded).
func (s *Store) fanout(n int, fn func(i int) error) []error {
	if n == 0 {
		return nil
	}
	if n == 1 {
		if err := fn(0); err != nil {
			return []error{err}
		}
		return nil
	}
	errs := make([]error, n)
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	failed := false
	var fmu sync.Mutex
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				errs[i] = err
				fmu.Lock()
				failed = true
				fmu.Unlock()
			}
		})
	}
	wg.Wait()
	if !failed {
		return nil
	}
	return errs
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// seqArg converts a seq to its bigint column value.
func seqArg(seq uint64) int64 {
	if seq > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(seq)
}

// Statements of chats, membership, markers and cursors. Constant strings:
// gocql prepares each once per connection and reuses it.
const (
	insertChat = `INSERT INTO chats (chat_id, kind, name, created_by, created_at, wid) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS`
	// upsertChat writes a direct chat's row (createDirect).
	upsertChat = `INSERT INTO chats (chat_id, kind, name, created_by, created_at, wid) VALUES (?, ?, ?, ?, ?, ?)`
	selectChat = `SELECT kind, name, created_by, created_at FROM chats WHERE chat_id = ?`

	insertMember  = `INSERT INTO chat_members (chat_id, user_id) VALUES (?, ?)`
	deleteMember  = `DELETE FROM chat_members WHERE chat_id = ? AND user_id = ?`
	selectMembers = `SELECT user_id FROM chat_members WHERE chat_id = ?`
	selectMember  = `SELECT user_id FROM chat_members WHERE chat_id = ? AND user_id = ?`

	insertRole  = `INSERT INTO chat_roles (chat_id, user_id, role, joined) VALUES (?, ?, ?, ?)`
	updateRole  = `UPDATE chat_roles SET role = ? WHERE chat_id = ? AND user_id = ?`
	deleteRole  = `DELETE FROM chat_roles WHERE chat_id = ? AND user_id = ?`
	selectRoles = `SELECT user_id, role, joined FROM chat_roles WHERE chat_id = ?`

	insertUserChat  = `INSERT INTO user_chats (user_id, chat_id) VALUES (?, ?)`
	deleteUserChat  = `DELETE FROM user_chats WHERE user_id = ? AND chat_id = ?`
	selectUserChats = `SELECT chat_id FROM user_chats WHERE user_id = ?`

	upsertReadMarker  = `INSERT INTO read_markers (user_id, chat_id, seq) VALUES (?, ?, ?) USING TIMESTAMP ?`
	selectReadMarkers = `SELECT chat_id, seq FROM read_markers WHERE user_id = ?`

	selectDeviceCursor = `SELECT seq FROM chat_cursors WHERE chat_id = ? AND user_id = ? AND device = ?`
	upsertChatCursor   = `INSERT INTO chat_cursors (chat_id, user_id, device, seq) VALUES (?, ?, ?, ?) USING TIMESTAMP ?`
	selectChatCursors  = `SELECT user_id, device, seq FROM chat_cursors WHERE chat_id = ?`
)

// CreateChat stores chat and its members. A group is created by a
// lightweight transaction on its chats row, then its members in a logged
// batch; ErrConflict if the group exists (nothing else is written then). A
// direct chat's id fixes its members, so creating it needs no transaction:
// the members' rows first (one unlogged batch), then the chats row, a
// plain write that is the commit point (Chat and UserChats see the chat
// only once it is there, so a crash in between leaves a creation to be
// done again). Creating a direct chat that exists succeeds and changes
// nothing the contract reads, except that created_by and created_at may
// take the later caller's values. Safe for concurrent use.
func (s *Store) CreateChat(ctx context.Context, chat record.Chat, members []string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if chat.ID == "" {
		return fmt.Errorf("cannot create chat: empty id")
	}
	if _, _, ok := record.DirectMembers(chat.ID); ok && chat.Kind == record.KindDirect {
		return s.createDirect(ctx, chat, members)
	}
	wid, err := gocql.RandomUUID()
	if err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	existing := map[string]any{}
	applied, err := s.write(ctx, insertChat, chat.ID, int8(chat.Kind), chat.Name, chat.CreatedBy, chat.CreatedAt, wid).MapScanCAS(existing)
	if err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, mapErr(err))
	}
	// A retry of our own committed transaction reports "not applied" with
	// our wid: that is a success.
	if !applied && existing["wid"] != wid {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, record.ErrConflict)
	}
	members = slices.Compact(slices.Sorted(slices.Values(members)))
	if len(members) == 0 {
		return nil
	}
	b := s.sess.Batch(gocql.LoggedBatch).WithContext(ctx)
	for _, u := range members {
		role := record.RoleMember
		if u == chat.CreatedBy {
			role = record.RoleCreator
		}
		b.Query(insertMember, chat.ID, u)
		b.Query(insertRole, chat.ID, u, int8(role), int64(0))
		b.Query(insertUserChat, u, chat.ID)
	}
	if err := s.sess.ExecuteBatch(b); err != nil {
		return fmt.Errorf("cannot add members of chat %s: %w", chat.ID, mapErr(err))
	}
	return nil
}

// createDirect writes a direct chat: members, then the chats row.
func (s *Store) createDirect(ctx context.Context, chat record.Chat, members []string) error {
	members = slices.Compact(slices.Sorted(slices.Values(members)))
	if len(members) > 0 {
		b := s.idempotentBatch(ctx)
		for _, u := range members {
			b.add(insertMember, chat.ID, u)
			b.add(insertRole, chat.ID, u, int8(record.RoleMember), int64(0))
			b.add(insertUserChat, u, chat.ID)
		}
		if err := s.sess.ExecuteBatch(b.Batch); err != nil {
			return fmt.Errorf("cannot add members of chat %s: %w", chat.ID, mapErr(err))
		}
	}
	wid, err := gocql.RandomUUID()
	if err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	if err := s.write(ctx, upsertChat, chat.ID, int8(chat.Kind), chat.Name, chat.CreatedBy, chat.CreatedAt, wid).Exec(); err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, mapErr(err))
	}
	return nil
}

// Chat returns a chat's metadata, or ErrNotFound. Safe for concurrent use.
func (s *Store) Chat(ctx context.Context, chatID string) (record.Chat, error) {
	if err := s.enter(); err != nil {
		return record.Chat{}, err
	}
	defer s.mu.RUnlock()
	c, err := s.chat(ctx, chatID)
	if err != nil {
		return record.Chat{}, fmt.Errorf("cannot read chat %s: %w", chatID, err)
	}
	return c, nil
}

func (s *Store) chat(ctx context.Context, chatID string) (record.Chat, error) {
	if chatID == "" {
		return record.Chat{}, record.ErrNotFound
	}
	c := record.Chat{ID: chatID}
	var kind int8
	if err := s.read(ctx, selectChat, chatID).Scan(&kind, &c.Name, &c.CreatedBy, &c.CreatedAt); err != nil {
		return record.Chat{}, mapErr(err)
	}
	c.Kind = record.ChatKind(uint8(kind))
	return c, nil
}

// Members returns the chat's members in ascending order, or ErrNotFound.
// Safe for concurrent use.
func (s *Store) Members(ctx context.Context, chatID string) ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if _, err := s.chat(ctx, chatID); err != nil {
		return nil, fmt.Errorf("cannot read members of chat %s: %w", chatID, err)
	}
	iter := s.read(ctx, selectMembers, chatID).Iter()
	out := []string{}
	var u string
	for iter.Scan(&u) {
		out = append(out, u)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read members of chat %s: %w", chatID, mapErr(err))
	}
	return out, nil // clustering order is ascending
}

// GroupMembers returns the chat's member rows in ascending user order, or
// ErrNotFound: the members, then their roles (two reads of one
// partition each). Safe for concurrent use.
func (s *Store) GroupMembers(ctx context.Context, chatID string) ([]record.Member, error) {
	users, err := s.Members(ctx, chatID)
	if err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := make([]record.Member, len(users))
	for i, u := range users {
		out[i].User = u
	}
	iter := s.read(ctx, selectRoles, chatID).Iter()
	var (
		u      string
		role   int8
		joined int64
	)
	for iter.Scan(&u, &role, &joined) {
		// A role row without a member row is a member removed meanwhile
		// (the batch that removes both is not isolated from this read).
		if i, ok := slices.BinarySearchFunc(out, u, func(m record.Member, u string) int { return strings.Compare(m.User, u) }); ok {
			out[i].Role, out[i].Joined = record.Role(uint8(role)), uint64(joined)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read roles of chat %s: %w", chatID, mapErr(err))
	}
	return out, nil
}

// AddMember adds m.User to chat, with m's role and join seq, and the chat
// to the user's list in one logged batch. ErrNotFound if the chat does not
// exist. Safe for concurrent use.
func (s *Store) AddMember(ctx context.Context, chatID string, m record.Member) error {
	return s.membership(ctx, chatID, m.User, &m, "add")
}

// RemoveMember removes user from chat and the chat from the user's list in
// one logged batch. ErrNotFound if the chat does not exist. Safe for
// concurrent use.
func (s *Store) RemoveMember(ctx context.Context, chatID, user string) error {
	return s.membership(ctx, chatID, user, nil, "remove")
}

// SetRole changes a member's role: a read of the member row, then a plain
// write of the role (not atomic against a concurrent RemoveMember: the
// logic tier serialises a chat's changes). ErrNotFound when the chat does
// not exist or user is not a member. Safe for concurrent use.
func (s *Store) SetRole(ctx context.Context, chatID, user string, role record.Role) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var u string
	if err := s.read(ctx, selectMember, chatID, user).Scan(&u); err != nil {
		return fmt.Errorf("cannot set role of %s in chat %s: %w", user, chatID, mapErr(err))
	}
	if err := s.write(ctx, updateRole, int8(role), chatID, user).Exec(); err != nil {
		return fmt.Errorf("cannot set role of %s in chat %s: %w", user, chatID, mapErr(err))
	}
	return nil
}

// membership adds user (with m's role and join seq) or, with m nil,
// removes them.
func (s *Store) membership(ctx context.Context, chatID, user string, m *record.Member, verb string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if _, err := s.chat(ctx, chatID); err != nil {
		return fmt.Errorf("cannot %s member %s of chat %s: %w", verb, user, chatID, err)
	}
	if user == "" {
		return fmt.Errorf("cannot %s member of chat %s: empty user id", verb, chatID)
	}
	b := s.sess.Batch(gocql.LoggedBatch).WithContext(ctx)
	if m != nil {
		b.Query(insertMember, chatID, user)
		b.Query(insertRole, chatID, user, int8(m.Role), int64(m.Joined))
		b.Query(insertUserChat, user, chatID)
	} else {
		b.Query(deleteMember, chatID, user)
		b.Query(deleteRole, chatID, user)
		b.Query(deleteUserChat, user, chatID)
	}
	if err := s.sess.ExecuteBatch(b); err != nil {
		return fmt.Errorf("cannot %s member %s of chat %s: %w", verb, user, chatID, mapErr(err))
	}
	return nil
}

// UserChats returns the user's chats with their last seq and the user's
// read marker. A user_chats row whose chat is missing is skipped. Safe for
// concurrent use.
func (s *Store) UserChats(ctx context.Context, user string) ([]record.ChatEntry, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if user == "" {
		return []record.ChatEntry{}, nil
	}
	var ids []string
	iter := s.read(ctx, selectUserChats, user).Iter()
	var id string
	for iter.Scan(&id) {
		ids = append(ids, id)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read chat list of %s: %w", user, mapErr(err))
	}
	if len(ids) == 0 {
		return []record.ChatEntry{}, nil
	}
	marks := make(map[string]uint64, len(ids))
	iter = s.read(ctx, selectReadMarkers, user).Iter()
	var seq int64
	for iter.Scan(&id, &seq) {
		marks[id] = uint64(seq)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read read markers of %s: %w", user, mapErr(err))
	}
	entries := make([]record.ChatEntry, len(ids))
	found := make([]bool, len(ids))
	errs := s.fanout(len(ids), func(i int) error {
		c, err := s.chat(ctx, ids[i])
		if errors.Is(err, record.ErrNotFound) {
			// Normal for a direct chat whose creation is in flight or
			// was cut short (its member rows come first); not for a group.
			lvl := slog.LevelWarn
			if _, _, ok := record.DirectMembers(ids[i]); ok {
				lvl = slog.LevelDebug
			}
			s.log.Log(ctx, lvl, "chat list names a missing chat", "user_id", user, "chat_id", ids[i])
			return nil
		}
		if err != nil {
			return err
		}
		last, err := s.lastSeq(ctx, ids[i])
		if err != nil {
			return err
		}
		entries[i] = record.ChatEntry{Chat: c, LastSeq: last, ReadSeq: marks[ids[i]]}
		found[i] = true
		return nil
	})
	if err := firstErr(errs); err != nil {
		return nil, fmt.Errorf("cannot read chat list of %s: %w", user, err)
	}
	out := entries[:0]
	for i, e := range entries {
		if found[i] {
			out = append(out, e)
		}
	}
	return out, nil
}

// SaveMarks raises read markers and device cursors. Each cell is written
// with its seq as the CQL timestamp, so concurrent or reordered raises
// converge on the highest seq without a read or a transaction. A cursor is
// one chat_cursors row, which DeviceCursor reads too (device_cursors held
// a copy of every cursor, written beside it, and is no longer written or
// read). The writes are sorted by partition, one partition's rows kept in
// one mutation, and cut into unlogged batches (cutMarks) sent in
// parallel: a few requests per call instead of one per partition. Safe for
// concurrent use.
func (s *Store) SaveMarks(ctx context.Context, marks []record.Mark) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	stmts := make([]markStmt, 0, len(marks))
	for _, m := range marks {
		v := seqArg(m.Seq)
		switch m.Kind {
		case record.MarkRead:
			if m.User == "" || m.ChatID == "" {
				return fmt.Errorf("cannot save read marker: empty user or chat id")
			}
			stmts = append(stmts, markStmt{"r\x00" + m.User, upsertReadMarker, []any{m.User, m.ChatID, v, v}, len(m.User) + len(m.ChatID) + 16})
		case record.MarkCursor:
			if m.User == "" || m.Device == "" || m.ChatID == "" {
				return fmt.Errorf("cannot save cursor: empty user, device or chat id")
			}
			stmts = append(stmts, markStmt{"c\x00" + m.ChatID, upsertChatCursor, []any{m.ChatID, m.User, m.Device, v, v}, len(m.ChatID) + len(m.User) + len(m.Device) + 16})
		default:
			return fmt.Errorf("cannot save mark of kind %d", m.Kind)
		}
	}
	slices.SortStableFunc(stmts, func(a, b markStmt) int { return strings.Compare(a.pk, b.pk) })
	cuts := cutMarks(stmts)
	errs := s.fanout(len(cuts), func(k int) error {
		end := len(stmts)
		if k+1 < len(cuts) {
			end = cuts[k+1]
		}
		batch := stmts[cuts[k]:end]
		if len(batch) == 1 {
			return s.write(ctx, batch[0].q, batch[0].args...).Exec()
		}
		b := s.idempotentBatch(ctx)
		for _, x := range batch {
			b.add(x.q, x.args...)
		}
		return s.sess.ExecuteBatch(b.Batch)
	})
	if err := firstErr(errs); err != nil {
		return fmt.Errorf("cannot save %d marks: %w", len(marks), mapErr(err))
	}
	return nil
}

// markStmt is one write of SaveMarks.
type markStmt struct {
	pk   string // partition key, for grouping
	q    string
	args []any
	size int // the bytes it adds to a batch, estimated
}

// Limits of one SaveMarks batch spanning several partitions: Cassandra
// warns above 10 partitions (unlogged_batch_across_partitions_warn_threshold)
// and above 5 KiB (batch_size_warn_threshold), and refuses above 50 KiB
// (batch_size_fail_threshold); a batch of one partition is exempt from
// both.
const (
	marksPerBatch   = 10
	marksBatchBytes = 4 << 10
)

// cutMarks returns where each batch of stmts (sorted by partition) starts:
// whole partitions only, at most marksPerBatch of them and marksBatchBytes
// in all, except a partition larger than that, which goes alone.
func cutMarks(stmts []markStmt) []int {
	var cuts []int
	parts, bytes := 0, 0
	for i := 0; i < len(stmts); {
		j, size := i, 0
		for ; j < len(stmts) && stmts[j].pk == stmts[i].pk; j++ {
			size += stmts[j].size
		}
		if len(cuts) == 0 || parts == marksPerBatch || bytes+size > marksBatchBytes {
			cuts = append(cuts, i)
			parts, bytes = 0, 0
		}
		parts++
		bytes += size
		i = j
	}
	return cuts
}

// DeviceCursor returns the device's delivery cursor in chat, 0 if none.
// Safe for concurrent use.
func (s *Store) DeviceCursor(ctx context.Context, user, device, chatID string) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	if user == "" || device == "" || chatID == "" {
		return 0, nil
	}
	var seq int64
	err := s.read(ctx, selectDeviceCursor, chatID, user, device).Scan(&seq)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("cannot read cursor of %s/%s in chat %s: %w", user, device, chatID, mapErr(err))
	}
	return uint64(seq), nil
}

// ChatCursors returns the delivery cursor of every device that has one in
// chat. Safe for concurrent use.
func (s *Store) ChatCursors(ctx context.Context, chatID string) ([]record.DeviceCursor, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := []record.DeviceCursor{}
	if chatID == "" {
		return out, nil
	}
	iter := s.read(ctx, selectChatCursors, chatID).Iter()
	var c record.DeviceCursor
	var seq int64
	for iter.Scan(&c.User, &c.Device, &seq) {
		c.Seq = uint64(seq)
		out = append(out, c)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read cursors of chat %s: %w", chatID, mapErr(err))
	}
	return out, nil
}
