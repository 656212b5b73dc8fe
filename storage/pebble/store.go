package pebble

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/parley-chat/parley/internal/record"
)

// Stripe counts. Chat stripes serialize the conflict check and commit of
// appends and chat creation per chat; marker stripes serialize the
// read-modify-write of read markers and device cursors per key. They are
// separate so that a marker update never waits behind an append's fsync.
const (
	chatStripes   = 256
	markerStripes = 64
)

// Store is the Pebble-backed storage. All methods are safe for concurrent
// use; see the package documentation for the concurrency contract.
type Store struct {
	db  *pdb.DB
	log *slog.Logger
	wo  *pdb.WriteOptions // for appends and membership: pdb.Sync unless Config.Sync is false

	chatMu [chatStripes]sync.Mutex // guards check+commit of appends and CreateChat, by hash(chat)
	// ceilings[i] (guarded by chatMu[i]) maps chats of stripe i to a seq
	// that no stored message of the chat exceeds, so that an append above
	// it needs no read to know its rows are new. This process is the
	// database's only writer (Pebble locks the directory), and every
	// message write raises the ceiling first, so the bound holds.
	ceilings [chatStripes]map[string]uint64
	markerMu [markerStripes]sync.Mutex // guards read-modify-write of markers, by hash(key)

	marks atomic.Uint64 // MarkPushed calls, to pace the ledger sweep

	// unscoped: the database may hold dedup keys written before keys were
	// scoped per device (see openDedupFormat); LookupDedup then falls back
	// to them. Set at Open.
	unscoped bool

	mu     sync.RWMutex // read-held by every operation, write-held by Close
	closed bool         // guarded by mu
}

// Open opens (creating if needed) the store in cfg.Dir on the local disk.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	return OpenFS(cfg, vfs.Default, log)
}

// OpenFS is Open on the given file system; tests pass an in-memory or
// crashable one (vfs.NewMem, vfs.NewCrashableMem).
func OpenFS(cfg Config, fs vfs.FS, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot open pebble store: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	opts := &pdb.Options{
		FS:                 fs,
		CacheSize:          cfg.CacheSize,
		MemTableSize:       cfg.MemTableSize,
		MaxOpenFiles:       cfg.MaxOpenFiles,
		FormatMajorVersion: pdb.FormatNewest,
		Logger:             slogLogger{log: log.With("component", "pebble")},
	}
	// Bloom filters (10 bits per key, ~1% false positives) on every level:
	// most point reads on the hot path miss (the dedup lookup of each send,
	// the conflict check of each append, a first read marker or cursor), and
	// without a filter a miss searches the index of every sstable.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if d := cfg.WALMinSyncInterval; d > 0 {
		opts.WALMinSyncInterval = func() time.Duration { return d }
	}
	db, err := pdb.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot open pebble store in %s: %w", cfg.Dir, err)
	}
	s := &Store{db: db, log: log, wo: pdb.Sync}
	if !cfg.Sync {
		s.wo = pdb.NoSync
		log.Warn("pebble store opened with sync disabled: acknowledged writes may be lost on power failure", "dir", cfg.Dir)
	}
	if s.unscoped, err = openDedupFormat(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cannot open pebble store in %s: %w", cfg.Dir, err)
	}
	log.Info("pebble store opened", "dir", cfg.Dir, "sync", cfg.Sync)
	return s, nil
}

// Close flushes the WAL, closes the database and releases its files. It is
// idempotent; every other method returns record.ErrClosed afterwards. It
// waits for operations in flight. Safe for concurrent use.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("cannot close pebble store: %w", err)
	}
	s.log.Info("pebble store closed")
	return nil
}

// enter starts an operation: it fails on a done ctx or a closed store, and
// otherwise holds mu for reading until leave.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return record.ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.mu.RUnlock() }

// fnv32 is FNV-1a, used to pick stripes.
func fnv32[T string | []byte](b T) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(b); i++ {
		h ^= uint32(b[i])
		h *= 16777619
	}
	return h
}

// lockChats locks the stripes of the given chats in ascending stripe order
// (so that concurrent multi-chat batches cannot deadlock) and returns the
// function that unlocks them.
func (s *Store) lockChats(chats []string) func() {
	var buf [8]uint32
	idx := buf[:0]
	for _, c := range chats {
		st := fnv32(c) % chatStripes
		if !slices.Contains(idx, st) {
			idx = append(idx, st)
		}
	}
	slices.Sort(idx)
	for _, st := range idx {
		s.chatMu[st].Lock()
	}
	return func() {
		for _, st := range idx {
			s.chatMu[st].Unlock()
		}
	}
}

func (s *Store) lockChat(chat string) *sync.Mutex {
	m := &s.chatMu[fnv32(chat)%chatStripes]
	m.Lock()
	return m
}

// get returns a copy of the value under key, or pdb.ErrNotFound.
func (s *Store) get(key []byte, dst []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if err != nil {
		return nil, err
	}
	dst = append(dst[:0], v...)
	closer.Close()
	return dst, nil
}

// exists reports whether key has a value.
func (s *Store) exists(key []byte) (bool, error) {
	_, closer, err := s.db.Get(key)
	if errors.Is(err, pdb.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

func validMessage(m *record.Message) error {
	if err := checkID("chat id", m.ChatID); err != nil {
		return err
	}
	if m.Seq == 0 {
		return fmt.Errorf("invalid seq 0 in chat %s", m.ChatID)
	}
	if strings.IndexByte(m.Sender, sep) >= 0 {
		return fmt.Errorf("invalid sender %q: contains a NUL byte", m.Sender)
	}
	if m.RequestID != "" {
		if err := checkID("request id", m.RequestID); err != nil {
			return err
		}
		if strings.ContainsAny(m.RequestID, "/") || strings.ContainsAny(m.Device, "/\x00") {
			return fmt.Errorf("invalid request id %q or device %q: '/' or NUL in a dedup key", m.RequestID, m.Device)
		}
	}
	return nil
}

// AppendMessages durably stores each chat's messages and their dedup
// entries, with one synced batch for the whole call (unless Config.Sync is
// false). Chats are independent (record.AppendResult): a chat whose
// messages meet a stored row with different content gets
// record.ErrConflict and nothing of it is written; rows already stored with
// identical content count as stored and are not written again; the other
// chats are written. A failed commit leaves the written chats' outcome
// unknown.
//
// The conflict checks and the commit run under the stripe locks of every
// chat of the call, so they are atomic against concurrent appends to the
// same chats; appends to other chats proceed in parallel, and their synced
// commits share WAL fsyncs through Pebble's commit pipeline (group commit).
// A dedup entry whose key is already stored is overwritten (the logic tier
// looks it up before appending). Safe for concurrent use.
func (s *Store) AppendMessages(ctx context.Context, appends []record.ChatAppend) []record.AppendResult {
	res := make([]record.AppendResult, len(appends))
	if err := s.enter(ctx); err != nil {
		for i := range res {
			res[i].Err = fmt.Errorf("cannot append messages: %w", err)
		}
		return res
	}
	defer s.leave()

	valid := make([]bool, len(appends))
	seen := make(map[string]struct{}, len(appends))
	var chats []string
	for i, a := range appends {
		if err := validAppend(a); err != nil {
			res[i].Err = fmt.Errorf("cannot append messages: %w: %w", record.ErrInvalid, err)
			continue
		}
		if _, dup := seen[a.ChatID()]; dup {
			res[i].Err = fmt.Errorf("cannot append messages: %w: chat %s twice in one call", record.ErrInvalid, a.ChatID())
			continue
		}
		seen[a.ChatID()] = struct{}{}
		valid[i] = true
		chats = append(chats, a.ChatID())
	}
	unlock := s.lockChats(chats)
	defer unlock()

	b := s.db.NewBatch()
	defer b.Close()
	var key, val []byte
	written := make([]bool, len(appends))
	for i, a := range appends {
		if !valid[i] {
			continue
		}
		// Which rows exist already: identical ones count as stored, a
		// different one is a conflict for the whole chat. Rows above the
		// chat's ceiling cannot exist: the usual append reads nothing.
		write := make([]bool, len(a.Msgs))
		lead, leading := 0, true
		top, err := s.ceiling(a.ChatID())
		if err != nil {
			res[i].Err = fmt.Errorf("cannot append to chat %s: %w", a.ChatID(), err)
			continue
		}
		for j := range a.Msgs {
			m := &a.Msgs[j]
			var same, found bool
			if m.Seq <= top {
				same, found, err = s.sameMessage(m)
			}
			if err != nil {
				err = fmt.Errorf("cannot check message %d of chat %s: %w", m.Seq, m.ChatID, err)
				break
			}
			if found && !same {
				err = fmt.Errorf("cannot append message %d to chat %s: %w", m.Seq, m.ChatID, record.ErrConflict)
				break
			}
			write[j] = !found
			if leading && found {
				lead++
			} else {
				leading = false
			}
		}
		res[i].Stored = lead
		if err != nil {
			res[i].Err = err
			continue
		}
		for j := range a.Msgs {
			if !write[j] {
				continue
			}
			m := &a.Msgs[j]
			key = msgKey(key[:0], m.ChatID, m.Seq)
			val = appendMessage(val[:0], m)
			if err := b.Set(key, val, nil); err != nil {
				res[i].Err = fmt.Errorf("cannot append message %d to chat %s: %w", m.Seq, m.ChatID, err)
				break
			}
			if m.RequestID != "" {
				key = dedupKey(key[:0], m.ChatID, m.Sender, record.MessageDedupKey(m).Stored())
				val = appendSeq(val[:0], m.Seq)
				if err := b.Set(key, val, nil); err != nil {
					res[i].Err = fmt.Errorf("cannot append dedup entry of message %d to chat %s: %w", m.Seq, m.ChatID, err)
					break
				}
			}
		}
		written[i] = res[i].Err == nil
		if written[i] {
			// Raised before the commit: whatever its outcome, no row of
			// the chat is above the new ceiling.
			s.raiseCeiling(a.ChatID(), a.Msgs[len(a.Msgs)-1].Seq)
		}
	}
	if b.Empty() {
		for i := range appends {
			if written[i] {
				res[i].Stored = len(appends[i].Msgs)
			}
		}
		return res
	}
	err := s.db.Apply(b, s.wo)
	for i := range appends {
		if !written[i] {
			continue
		}
		if err != nil {
			res[i].Err = fmt.Errorf("cannot append %d messages to chat %s: %w", len(appends[i].Msgs), appends[i].ChatID(), err)
			continue
		}
		res[i].Stored = len(appends[i].Msgs)
	}
	return res
}

// validAppend checks an append's shape and every message's ids.
func validAppend(a record.ChatAppend) error {
	if err := a.Validate(); err != nil {
		return err
	}
	for i := range a.Msgs {
		if err := validMessage(&a.Msgs[i]); err != nil {
			return err
		}
	}
	return nil
}

// maxCeilings bounds each stripe's map of ceilings (256 stripes: about
// 260,000 chats); a full map is emptied, and its chats read their
// ceilings again.
const maxCeilings = 1024

// ceiling returns a seq that no stored message of chat exceeds: from
// memory, else the newest stored seq (one reverse seek), remembered. Call
// with chat's stripe lock held.
func (s *Store) ceiling(chat string) (uint64, error) {
	st := fnv32(chat) % chatStripes
	if v, ok := s.ceilings[st][chat]; ok {
		return v, nil
	}
	v, err := s.lastSeq(chat)
	if err != nil {
		return 0, err
	}
	s.raiseCeiling(chat, v)
	return v, nil
}

// raiseCeiling raises chat's ceiling to at least seq. Call with chat's
// stripe lock held.
func (s *Store) raiseCeiling(chat string, seq uint64) {
	st := fnv32(chat) % chatStripes
	m := s.ceilings[st]
	if v, ok := m[chat]; ok {
		m[chat] = max(v, seq)
		return
	}
	if m == nil {
		m = make(map[string]uint64)
		s.ceilings[st] = m
	} else if len(m) >= maxCeilings {
		clear(m)
	}
	m[chat] = seq
}

// sameMessage reports whether m's (chat, seq) is stored, and if so whether
// with m's content.
func (s *Store) sameMessage(m *record.Message) (same, found bool, err error) {
	v, closer, err := s.db.Get(msgKey(nil, m.ChatID, m.Seq))
	if errors.Is(err, pdb.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	defer closer.Close()
	got, err := decodeMessage(m.ChatID, m.Seq, v)
	if err != nil {
		return false, true, err
	}
	return got == *m, true, nil
}

// LastSeq returns the highest seq stored for chat, 0 if none: one reverse
// seek. Safe for concurrent use.
func (s *Store) LastSeq(ctx context.Context, chatID string) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, fmt.Errorf("cannot read last seq of chat %s: %w", chatID, err)
	}
	defer s.leave()
	if err := checkID("chat id", chatID); err != nil {
		return 0, fmt.Errorf("cannot read last seq: %w", err)
	}
	return s.lastSeq(chatID)
}

// lastSeq is LastSeq of a valid chat id, in an open store.
func (s *Store) lastSeq(chatID string) (uint64, error) {
	lower := msgPrefix(nil, chatID)
	it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return 0, fmt.Errorf("cannot read last seq of chat %s: %w", chatID, err)
	}
	var seq uint64
	if it.Last() {
		seq, _ = seqOfMsgKey(it.Key(), len(lower))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("cannot read last seq of chat %s: %w", chatID, err)
	}
	return seq, nil
}

// errDedupNotFound is LookupDedup's answer for a key never stored.
var errDedupNotFound = fmt.Errorf("cannot look up dedup entry: %w", record.ErrNotFound)

// LookupDedup returns the message stored under key, or record.ErrNotFound.
// In a database that may hold keys from before keys were scoped per device,
// a miss falls back to the bare request id, matched only when its message
// came from key.Device. Safe for concurrent use.
func (s *Store) LookupDedup(ctx context.Context, key record.DedupKey) (record.Message, error) {
	if err := s.enter(ctx); err != nil {
		return record.Message{}, fmt.Errorf("cannot look up dedup entry: %w", err)
	}
	defer s.leave()
	if key.RequestID == "" || key.Unscoped || checkID("chat id", key.ChatID) != nil ||
		strings.IndexByte(key.Sender, sep) >= 0 || strings.IndexByte(key.Device, sep) >= 0 ||
		strings.IndexByte(key.RequestID, sep) >= 0 {
		return record.Message{}, errDedupNotFound
	}
	m, err := s.lookupDedup(key, key.Device+"/"+key.RequestID)
	if errors.Is(err, record.ErrNotFound) && s.unscoped {
		if m, err = s.lookupDedup(key, key.RequestID); err == nil && !record.UnscopedMatch(&m, key) {
			return record.Message{}, errDedupNotFound
		}
	}
	return m, err
}

func (s *Store) lookupDedup(key record.DedupKey, stored string) (record.Message, error) {
	var kbuf [224]byte
	var vbuf [8]byte
	v, err := s.get(dedupKey(kbuf[:0], key.ChatID, key.Sender, stored), vbuf[:0])
	if errors.Is(err, pdb.ErrNotFound) {
		// The common case (every new send): no formatting.
		return record.Message{}, errDedupNotFound
	}
	if err != nil {
		return record.Message{}, fmt.Errorf("cannot look up dedup entry %+v: %w", key, err)
	}
	seq, err := decodeSeq(v)
	if err != nil {
		return record.Message{}, fmt.Errorf("cannot look up dedup entry %+v: %w", key, err)
	}
	m, err := s.message(key.ChatID, seq)
	if errors.Is(err, record.ErrNotFound) {
		// The dedup row and the message are written in one batch; a dedup
		// row without its message means the database is damaged.
		return record.Message{}, fmt.Errorf("cannot look up dedup entry %+v: %w: message %d missing", key, errCorrupt, seq)
	}
	return m, err
}

// DedupKeys lists up to limit of the chat's request keys with one prefix
// scan of its dedup rows ('k' chat 00); complete is false when there are
// more. The embedded store keeps keys for good, so a long-lived chat soon
// has more than a sequencer loads (it then looks keys up one by one). Safe
// for concurrent use.
func (s *Store) DedupKeys(ctx context.Context, chatID string, limit int) ([]record.DedupKey, bool, error) {
	if err := s.enter(ctx); err != nil {
		return nil, false, fmt.Errorf("cannot list dedup keys: %w", err)
	}
	defer s.leave()
	if checkID("chat id", chatID) != nil {
		return nil, true, nil
	}
	lower := append([]byte{tableDedup}, chatID...)
	lower = append(lower, sep)
	it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return nil, false, fmt.Errorf("cannot list dedup keys of chat %s: %w", chatID, err)
	}
	defer it.Close()
	var out []record.DedupKey
	for ok := it.First(); ok; ok = it.Next() {
		rest := it.Key()[len(lower):]
		i := bytes.IndexByte(rest, sep)
		if i < 0 {
			return nil, false, fmt.Errorf("cannot list dedup keys of chat %s: %w: key without sender", chatID, errCorrupt)
		}
		if len(out) == limit {
			return out, false, nil
		}
		out = append(out, record.ParseDedupKey(chatID, string(rest[:i]), string(rest[i+1:])))
	}
	if err := it.Error(); err != nil {
		return nil, false, fmt.Errorf("cannot list dedup keys of chat %s: %w", chatID, err)
	}
	return out, true, nil
}

// Message returns one message, or record.ErrNotFound. Safe for concurrent
// use.
func (s *Store) Message(ctx context.Context, chatID string, seq uint64) (record.Message, error) {
	if err := s.enter(ctx); err != nil {
		return record.Message{}, fmt.Errorf("cannot read message %d of chat %s: %w", seq, chatID, err)
	}
	defer s.leave()
	if err := checkID("chat id", chatID); err != nil {
		return record.Message{}, fmt.Errorf("cannot read message: %w", err)
	}
	return s.message(chatID, seq)
}

func (s *Store) message(chatID string, seq uint64) (record.Message, error) {
	v, closer, err := s.db.Get(msgKey(nil, chatID, seq))
	if errors.Is(err, pdb.ErrNotFound) {
		return record.Message{}, fmt.Errorf("cannot read message %d of chat %s: %w", seq, chatID, record.ErrNotFound)
	}
	if err != nil {
		return record.Message{}, fmt.Errorf("cannot read message %d of chat %s: %w", seq, chatID, err)
	}
	defer closer.Close()
	return decodeMessage(chatID, seq, v)
}

// pageLimit applies the documented limit semantics: <= 0 or above
// record.MaxPageLimit means record.MaxPageLimit.
func pageLimit(n int) int {
	if n <= 0 || n > record.MaxPageLimit {
		return record.MaxPageLimit
	}
	return n
}

// Messages returns a page of history in ascending seq order (record.Page):
// with Before > 0 the newest Limit messages below Before (After ignored),
// else with After > 0 the oldest Limit messages above After, else the newest
// Limit messages. Limit <= 0 or above record.MaxPageLimit means
// record.MaxPageLimit. One bounded range scan. Safe for concurrent use.
func (s *Store) Messages(ctx context.Context, chatID string, page record.Page) ([]record.Message, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("cannot read messages of chat %s: %w", chatID, err)
	}
	defer s.leave()
	if err := checkID("chat id", chatID); err != nil {
		return nil, fmt.Errorf("cannot read messages: %w", err)
	}
	limit := pageLimit(page.Limit)
	prefix := msgPrefix(nil, chatID)
	opts := pdb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)}
	forward := page.Before == 0 && (page.After > 0 || page.Forward)
	switch {
	case page.Before > 0:
		opts.UpperBound = msgKey(nil, chatID, page.Before)
	case forward:
		if page.After == ^uint64(0) {
			return []record.Message{}, nil
		}
		opts.LowerBound = msgKey(nil, chatID, page.After+1)
	}
	it, err := s.db.NewIter(&opts)
	if err != nil {
		return nil, fmt.Errorf("cannot read messages of chat %s: %w", chatID, err)
	}
	out := make([]record.Message, 0, min(limit, 64))
	var derr error
	var valid bool
	if forward {
		valid = it.First()
	} else {
		valid = it.Last()
	}
	for ; valid && len(out) < limit; valid = step(it, forward) {
		seq, ok := seqOfMsgKey(it.Key(), len(prefix))
		if !ok {
			derr = fmt.Errorf("%w: message key of %d bytes", errCorrupt, len(it.Key()))
			break
		}
		var m record.Message
		m, derr = decodeMessage(chatID, seq, it.Value())
		if derr != nil {
			break
		}
		out = append(out, m)
	}
	if err := errors.Join(derr, it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("cannot read messages of chat %s: %w", chatID, err)
	}
	if !forward {
		slices.Reverse(out)
	}
	return out, nil
}

func step(it *pdb.Iterator, forward bool) bool {
	if forward {
		return it.Next()
	}
	return it.Prev()
}

func checkMembers(members []string) error {
	for _, u := range members {
		if err := checkID("user id", u); err != nil {
			return err
		}
	}
	return nil
}

// CreateChat durably stores chat, its members and each member's chat-list
// entry in one synced batch. record.ErrConflict if the chat exists; the check
// and the commit are atomic under the chat's stripe lock. Safe for concurrent
// use.
func (s *Store) CreateChat(ctx context.Context, chat record.Chat, members []string) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	defer s.leave()
	if err := errors.Join(checkID("chat id", chat.ID), checkMembers(members)); err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	defer s.lockChat(chat.ID).Unlock()
	key := chatKey(nil, chat.ID)
	ok, err := s.exists(key)
	if err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	if ok {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, record.ErrConflict)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(key, appendChat(nil, &chat), nil); err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	for _, u := range members {
		m := record.Member{User: u, Role: record.RoleMember}
		if chat.Kind == record.KindGroup && u == chat.CreatedBy {
			m.Role = record.RoleCreator
		}
		key = memberKey(key[:0], chat.ID, u)
		if err := b.Set(key, appendMember(nil, m), nil); err != nil {
			return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
		}
		key = listKey(key[:0], u, chat.ID)
		if err := b.Set(key, nil, nil); err != nil {
			return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
		}
	}
	if err := s.db.Apply(b, s.wo); err != nil {
		return fmt.Errorf("cannot create chat %s: %w", chat.ID, err)
	}
	return nil
}

// Chat returns a chat's metadata, or record.ErrNotFound. Safe for concurrent
// use.
func (s *Store) Chat(ctx context.Context, chatID string) (record.Chat, error) {
	if err := s.enter(ctx); err != nil {
		return record.Chat{}, fmt.Errorf("cannot read chat %s: %w", chatID, err)
	}
	defer s.leave()
	if err := checkID("chat id", chatID); err != nil {
		return record.Chat{}, fmt.Errorf("cannot read chat: %w", err)
	}
	return s.chat(chatID)
}

func (s *Store) chat(chatID string) (record.Chat, error) {
	v, closer, err := s.db.Get(chatKey(nil, chatID))
	if errors.Is(err, pdb.ErrNotFound) {
		return record.Chat{}, fmt.Errorf("cannot read chat %s: %w", chatID, record.ErrNotFound)
	}
	if err != nil {
		return record.Chat{}, fmt.Errorf("cannot read chat %s: %w", chatID, err)
	}
	defer closer.Close()
	return decodeChat(chatID, v)
}

// chatExists returns record.ErrNotFound (wrapped) unless the chat exists.
func (s *Store) chatExists(chatID string) error {
	ok, err := s.exists(chatKey(nil, chatID))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("chat %s: %w", chatID, record.ErrNotFound)
	}
	return nil
}

// Members returns the chat's members in ascending order, or
// record.ErrNotFound when the chat does not exist. Safe for concurrent use.
func (s *Store) Members(ctx context.Context, chatID string) ([]string, error) {
	out := []string{}
	err := s.scanMembers(ctx, chatID, func(user string, _ []byte) error {
		out = append(out, user)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GroupMembers returns the chat's member rows in ascending user order, or
// record.ErrNotFound when the chat does not exist. Safe for concurrent
// use.
func (s *Store) GroupMembers(ctx context.Context, chatID string) ([]record.Member, error) {
	out := []record.Member{}
	err := s.scanMembers(ctx, chatID, func(user string, v []byte) error {
		m, err := decodeMember(user, v)
		out = append(out, m)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanMembers calls fn with each member row of chat ('b' chat 00 user),
// in ascending user order, until fn fails; record.ErrNotFound when the
// chat does not exist.
func (s *Store) scanMembers(ctx context.Context, chatID string, fn func(user string, v []byte) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot read members of chat %s: %w", chatID, err)
	}
	defer s.leave()
	if err := checkID("chat id", chatID); err != nil {
		return fmt.Errorf("cannot read members: %w", err)
	}
	if err := s.chatExists(chatID); err != nil {
		return fmt.Errorf("cannot read members: %w", err)
	}
	prefix := memberPrefix(nil, chatID)
	it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("cannot read members of chat %s: %w", chatID, err)
	}
	for valid := it.First(); valid && err == nil; valid = it.Next() {
		err = fn(string(it.Key()[len(prefix):]), it.Value())
	}
	if err := errors.Join(err, it.Error(), it.Close()); err != nil {
		return fmt.Errorf("cannot read members of chat %s: %w", chatID, err)
	}
	return nil
}

// AddMember durably adds m.User to chat, with m's role and join seq, and
// the chat to the user's list in one synced batch. Adding an existing
// member is not an error and replaces its row; record.ErrNotFound if the
// chat does not exist. Safe for concurrent use.
func (s *Store) AddMember(ctx context.Context, chatID string, m record.Member) error {
	return s.setMember(ctx, chatID, m.User, appendMember(nil, m))
}

// SetRole changes the role of user in chat, keeping its join seq;
// record.ErrNotFound when the chat does not exist or user is not a member.
// The read and the write run under the chat's stripe lock. Synced. Safe
// for concurrent use.
func (s *Store) SetRole(ctx context.Context, chatID, user string, role record.Role) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot set role of %s in chat %s: %w", user, chatID, err)
	}
	defer s.leave()
	if err := errors.Join(checkID("chat id", chatID), checkID("user id", user)); err != nil {
		return fmt.Errorf("cannot set role: %w", err)
	}
	defer s.lockChat(chatID).Unlock()
	key := memberKey(nil, chatID, user)
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pdb.ErrNotFound) {
		return fmt.Errorf("cannot set role of %s in chat %s: not a member: %w", user, chatID, record.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("cannot set role of %s in chat %s: %w", user, chatID, err)
	}
	m, err := decodeMember(user, v)
	closer.Close()
	if err != nil {
		return fmt.Errorf("cannot set role of %s in chat %s: %w", user, chatID, err)
	}
	m.Role = role
	if err := s.db.Set(key, appendMember(nil, m), s.wo); err != nil {
		return fmt.Errorf("cannot set role of %s in chat %s: %w", user, chatID, err)
	}
	return nil
}

// RemoveMember durably removes user from chat and the chat from the user's
// list in one synced batch. Removing a non-member is not an error;
// record.ErrNotFound if the chat does not exist. The user's read marker and
// device cursors in the chat are kept. Safe for concurrent use.
func (s *Store) RemoveMember(ctx context.Context, chatID, user string) error {
	return s.setMember(ctx, chatID, user, nil)
}

// setMember writes user's member row with value row and the list entry,
// or deletes both when row is nil.
func (s *Store) setMember(ctx context.Context, chatID, user string, row []byte) error {
	add := row != nil
	verb := "remove"
	if add {
		verb = "add"
	}
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot %s member %s of chat %s: %w", verb, user, chatID, err)
	}
	defer s.leave()
	if err := errors.Join(checkID("chat id", chatID), checkID("user id", user)); err != nil {
		return fmt.Errorf("cannot %s member: %w", verb, err)
	}
	// Chats are never deleted, so the existence check needs no lock; the
	// two rows change together in one batch, so concurrent adds and removes
	// of the same user leave both directions agreeing. The chat's stripe
	// lock orders them against SetRole's read and write.
	if err := s.chatExists(chatID); err != nil {
		return fmt.Errorf("cannot %s member %s: %w", verb, user, err)
	}
	defer s.lockChat(chatID).Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	var err error
	if add {
		err = errors.Join(b.Set(memberKey(nil, chatID, user), row, nil), b.Set(listKey(nil, user, chatID), nil, nil))
	} else {
		err = errors.Join(b.Delete(memberKey(nil, chatID, user), nil), b.Delete(listKey(nil, user, chatID), nil))
	}
	if err == nil {
		err = s.db.Apply(b, s.wo)
	}
	if err != nil {
		return fmt.Errorf("cannot %s member %s of chat %s: %w", verb, user, chatID, err)
	}
	return nil
}

// UserChats returns the user's chat list with each chat's last seq and the
// user's read marker, in chat id order: a prefix scan plus, per chat, a
// point read of its metadata and read marker and one reverse seek. Safe for
// concurrent use.
func (s *Store) UserChats(ctx context.Context, user string) ([]record.ChatEntry, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("cannot read chat list of user %s: %w", user, err)
	}
	defer s.leave()
	if err := checkID("user id", user); err != nil {
		return nil, fmt.Errorf("cannot read chat list: %w", err)
	}
	prefix := listPrefix(nil, user)
	list, err := s.db.NewIter(&pdb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("cannot read chat list of user %s: %w", user, err)
	}
	var chats []string
	for valid := list.First(); valid; valid = list.Next() {
		chats = append(chats, string(list.Key()[len(prefix):]))
	}
	if err := errors.Join(list.Error(), list.Close()); err != nil {
		return nil, fmt.Errorf("cannot read chat list of user %s: %w", user, err)
	}
	out := make([]record.ChatEntry, 0, len(chats))
	if len(chats) == 0 {
		return out, nil
	}

	msgs, err := s.db.NewIter(&pdb.IterOptions{LowerBound: []byte{tableMessage}, UpperBound: []byte{tableMessage + 1}})
	if err != nil {
		return nil, fmt.Errorf("cannot read chat list of user %s: %w", user, err)
	}
	defer msgs.Close()
	var key, val []byte
	for _, id := range chats {
		c, err := s.chat(id)
		if errors.Is(err, record.ErrNotFound) {
			s.log.Warn("chat list entry without chat", "user_id", user, "chat_id", id)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read chat list of user %s: %w", user, err)
		}
		e := record.ChatEntry{Chat: c}
		key = msgPrefix(key[:0], id)
		plen := len(key)
		key[plen-1] = sep + 1 // prefixEnd in place
		if msgs.SeekLT(key) {
			key[plen-1] = sep
			if k := msgs.Key(); bytes.HasPrefix(k, key[:plen]) {
				e.LastSeq, _ = seqOfMsgKey(k, plen)
			}
		}
		if err := msgs.Error(); err != nil {
			return nil, fmt.Errorf("cannot read chat list of user %s: %w", user, err)
		}
		val, err = s.get(readKey(key[:0], user, id), val)
		switch {
		case err == nil:
			if e.ReadSeq, err = decodeSeq(val); err != nil {
				return nil, fmt.Errorf("cannot read read marker of user %s in chat %s: %w", user, id, err)
			}
		case !errors.Is(err, pdb.ErrNotFound):
			return nil, fmt.Errorf("cannot read read marker of user %s in chat %s: %w", user, id, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// SaveMarks raises read markers and device cursors (a cursor in both its
// rows, by device and by chat) in one synced batch: when it returns they
// are durable. A mark never lowers a stored value. The read-modify-writes
// run under the marker stripes of every key, taken in ascending order, so
// concurrent calls cannot lower each other's raises; they never wait
// behind an append's fsync (separate stripes). Safe for concurrent use.
func (s *Store) SaveMarks(ctx context.Context, marks []record.Mark) error {
	if len(marks) == 0 {
		return nil
	}
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot save %d marks: %w", len(marks), err)
	}
	defer s.leave()
	var raises []markRaise
	for _, m := range marks {
		switch m.Kind {
		case record.MarkRead:
			if err := errors.Join(checkID("user id", m.User), checkID("chat id", m.ChatID)); err != nil {
				return fmt.Errorf("cannot save read marker of %s in chat %s: %w", m.User, m.ChatID, err)
			}
			raises = append(raises, markRaise{readKey(nil, m.User, m.ChatID), m.Seq})
		case record.MarkCursor:
			if err := errors.Join(checkID("user id", m.User), checkID("device id", m.Device), checkID("chat id", m.ChatID)); err != nil {
				return fmt.Errorf("cannot save cursor of %s/%s in chat %s: %w", m.User, m.Device, m.ChatID, err)
			}
			raises = append(raises, markRaise{cursorKey(nil, m.User, m.Device, m.ChatID), m.Seq},
				markRaise{chatCursorKey(nil, m.ChatID, m.User, m.Device), m.Seq})
		default:
			return fmt.Errorf("cannot save mark of kind %d", m.Kind)
		}
	}
	// One raise per key, the highest.
	slices.SortFunc(raises, func(a, b markRaise) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	raises = slices.CompactFunc(raises, func(a, b markRaise) bool { return bytes.Equal(a.key, b.key) })
	var stripes []uint32
	for _, r := range raises {
		st := fnv32(r.key) % markerStripes
		if !slices.Contains(stripes, st) {
			stripes = append(stripes, st)
		}
	}
	slices.Sort(stripes)
	if _, err := s.raiseMarks(stripes, raises); err != nil {
		return fmt.Errorf("cannot save %d marks: %w", len(marks), err)
	}
	if len(raises) == 0 || s.wo != pdb.Sync {
		return nil
	}
	// The raises went in unsynced under the marker locks, so a slow fdatasync
	// never holds them; one synced empty write makes them durable (it flushes
	// the WAL up to and including them) before SaveMarks returns. It runs
	// even when this call raised nothing: the values that covered ours may
	// come from a concurrent call that has not synced yet.
	if err := s.db.LogData(nil, s.wo); err != nil {
		return fmt.Errorf("cannot sync %d marks: %w", len(marks), err)
	}
	return nil
}

type markRaise struct {
	key []byte
	seq uint64
}

// raiseMarks writes every raise above its key's stored value in one unsynced
// batch under the stripes' marker locks; it reports whether it wrote any.
func (s *Store) raiseMarks(stripes []uint32, raises []markRaise) (bool, error) {
	for _, st := range stripes {
		s.markerMu[st].Lock()
	}
	defer func() {
		for _, st := range stripes {
			s.markerMu[st].Unlock()
		}
	}()
	b := s.db.NewBatch()
	defer b.Close()
	var buf [8]byte
	for _, r := range raises {
		v, err := s.get(r.key, buf[:0])
		switch {
		case err == nil:
			cur, err := decodeSeq(v)
			if err != nil {
				return false, err
			}
			if cur >= r.seq {
				continue
			}
		case errors.Is(err, pdb.ErrNotFound):
			if r.seq == 0 {
				continue
			}
		default:
			return false, err
		}
		if err := b.Set(r.key, appendSeq(nil, r.seq), nil); err != nil {
			return false, err
		}
	}
	if b.Empty() {
		return false, nil
	}
	if err := s.db.Apply(b, pdb.NoSync); err != nil {
		return false, err
	}
	return true, nil
}

// ChatCursors returns the delivery cursor of every device in chat. Safe for
// concurrent use.
func (s *Store) ChatCursors(ctx context.Context, chatID string) ([]record.DeviceCursor, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("cannot read cursors of chat %s: %w", chatID, err)
	}
	defer s.leave()
	if err := checkID("chat id", chatID); err != nil {
		return nil, fmt.Errorf("cannot read cursors: %w", err)
	}
	prefix := chatCursorPrefix(nil, chatID)
	it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("cannot read cursors of chat %s: %w", chatID, err)
	}
	out := []record.DeviceCursor{}
	var derr error
	for valid := it.First(); valid; valid = it.Next() {
		rest := it.Key()[len(prefix):]
		i := bytes.IndexByte(rest, sep)
		seq, err := decodeSeq(it.Value())
		if i <= 0 || err != nil {
			derr = fmt.Errorf("corrupt cursor row %q", it.Key())
			break
		}
		out = append(out, record.DeviceCursor{User: string(rest[:i]), Device: string(rest[i+1:]), Seq: seq})
	}
	if err := errors.Join(derr, it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("cannot read cursors of chat %s: %w", chatID, err)
	}
	return out, nil
}

// DeviceCursor returns the device's delivery cursor in chat, 0 if none. Safe
// for concurrent use.
func (s *Store) DeviceCursor(ctx context.Context, user, device, chatID string) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, fmt.Errorf("cannot read cursor of device %s/%s in chat %s: %w", user, device, chatID, err)
	}
	defer s.leave()
	if err := errors.Join(checkID("user id", user), checkID("device id", device), checkID("chat id", chatID)); err != nil {
		return 0, fmt.Errorf("cannot read device cursor: %w", err)
	}
	var buf [8]byte
	v, err := s.get(cursorKey(nil, user, device, chatID), buf[:0])
	if errors.Is(err, pdb.ErrNotFound) {
		return 0, nil
	}
	if err == nil {
		var seq uint64
		if seq, err = decodeSeq(v); err == nil {
			return seq, nil
		}
	}
	return 0, fmt.Errorf("cannot read cursor of device %s/%s in chat %s: %w", user, device, chatID, err)
}

// dedupFormatKey records whether the database may hold dedup keys written
// before keys were scoped per device: "unscoped" or "scoped".
var dedupFormatKey = []byte{tableMeta, 'd', 'e', 'd', 'u', 'p'}

// openDedupFormat reads the dedup key format, recording it on the first
// open by this version: a database that already holds dedup keys may hold
// unscoped ones (kept for good: this store never expires keys), a new one
// never does. It reports whether unscoped keys may exist.
func openDedupFormat(db *pdb.DB) (bool, error) {
	v, closer, err := db.Get(dedupFormatKey)
	if err == nil {
		unscoped := string(v) == "unscoped"
		_ = closer.Close()
		return unscoped, nil
	}
	if !errors.Is(err, pdb.ErrNotFound) {
		return false, fmt.Errorf("cannot read the dedup key format: %w", err)
	}
	it, err := db.NewIter(&pdb.IterOptions{LowerBound: []byte{tableDedup}, UpperBound: []byte{tableDedup + 1}})
	if err != nil {
		return false, fmt.Errorf("cannot read the dedup key format: %w", err)
	}
	unscoped := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return false, fmt.Errorf("cannot read the dedup key format: %w", err)
	}
	val := "scoped"
	if unscoped {
		val = "unscoped"
	}
	if err := db.Set(dedupFormatKey, []byte(val), pdb.Sync); err != nil {
		return false, fmt.Errorf("cannot record the dedup key format: %w", err)
	}
	return unscoped, nil
}
