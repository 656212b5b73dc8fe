package pebble

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage/storetest"
)

var _ storetest.Store = (*Store)(nil)

// openMem opens a synced store on a fresh in-memory file system: the same
// code path as on disk, without the disk's fsync latency.
func openMem(t *testing.T) *Store {
	t.Helper()
	cfg := Default()
	cfg.Dir = "/db"
	cfg.CacheSize = 1 << 20
	cfg.MemTableSize = 1 << 20
	s, err := OpenFS(cfg, vfs.NewMem(), nil)
	if err != nil {
		t.Fatalf("OpenFS: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openMem(t) }, storetest.Options{})
}

func TestPersistent(t *testing.T) {
	storetest.RunPersistent(t, func(t *testing.T, dir string) storetest.Store {
		cfg := Default()
		cfg.Dir = dir
		cfg.CacheSize = 1 << 20
		s, err := Open(cfg, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, storetest.Options{})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none means valid
	}{
		{"default with dir", func(c *Config) { c.Dir = "/x" }, nil},
		{"zero values mean defaults", func(c *Config) { *c = Config{Dir: "/x"} }, nil},
		{"no dir", func(c *Config) {}, []string{"dir: required"}},
		{"everything wrong", func(c *Config) {
			c.CacheSize = -1
			c.MemTableSize = 5 << 30
			c.MaxOpenFiles = -3
			c.WALMinSyncInterval = 2 * time.Second
		}, []string{"dir: required", "cache_size", "memtable_size", "max_open_files", "wal_min_sync_interval"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: got %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if !c.Sync || c.CacheSize != 64<<20 {
		t.Fatalf("Default: got %+v, want Sync true and 64 MiB cache", c)
	}
	if _, err := OpenFS(c, vfs.NewMem(), nil); err == nil {
		t.Fatalf("OpenFS without dir: got nil error, want one")
	}
}

func TestInvalidIDs(t *testing.T) {
	s := openMem(t)
	ctx := t.Context()
	bad := []record.Message{
		{ChatID: "", Seq: 1},
		{ChatID: "g:a\x00b", Seq: 1},
		{ChatID: "g:a", Seq: 0},
		{ChatID: "g:a", Seq: 1, Sender: "a\x00"},
		{ChatID: "g:a", Seq: 1, RequestID: "r\x00"},
	}
	for _, m := range bad {
		err := storetest.Append(ctx, s, 0, []record.Message{m})
		if err == nil || errors.Is(err, record.ErrConflict) {
			t.Errorf("AppendMessages(%+v): got %v, want a validation error", m, err)
		}
	}
	if got, err := s.LastSeq(ctx, "g:a"); err != nil || got != 0 {
		t.Fatalf("LastSeq after refused appends: got %d, %v, want 0", got, err)
	}
	if err := s.CreateChat(ctx, record.Chat{ID: "g:x"}, []string{"a\x00"}); err == nil {
		t.Fatalf("CreateChat with NUL member: got nil error")
	}
	if _, err := s.Chat(ctx, "g:x"); !errors.Is(err, record.ErrNotFound) {
		t.Fatalf("Chat after refused CreateChat: got %v, want ErrNotFound", err)
	}
	if res := s.AppendMessages(ctx, nil); len(res) != 0 {
		t.Fatalf("AppendMessages(nil): got %+v, want no results", res)
	}
}

func TestCanceledContext(t *testing.T) {
	s := openMem(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := storetest.Append(ctx, s, 0, storetest.Msgs("g:a", 1, 1)); err == nil {
		t.Fatalf("AppendMessages with canceled ctx: got nil error")
	}
	if got, err := s.LastSeq(t.Context(), "g:a"); err != nil || got != 0 {
		t.Fatalf("LastSeq: got %d, %v, want 0", got, err)
	}
}

// TestUnscopedDedupKeys: a database written before dedup keys were scoped
// per device holds bare request ids, kept for good. Opened by this version
// it is marked unscoped: LookupDedup finds such a key for the device its
// message came from, and only for it, and DedupKeys lists it as unscoped.
// A database without old keys is marked scoped on its first open.
func TestUnscopedDedupKeys(t *testing.T) {
	ctx := t.Context()
	fs := vfs.NewMem()
	s := openOn(t, fs)
	if s.unscoped {
		t.Fatal("a new database is marked unscoped")
	}
	m := storetest.Msg("g:old", 2) // request id req-2, device phone-1
	if err := storetest.Append(ctx, s, 0, []record.Message{m}); err != nil {
		t.Fatal(err)
	}
	// Make it look as the previous version left it: a bare key, no marker.
	b := s.db.NewBatch()
	_ = b.Delete(dedupKey(nil, m.ChatID, m.Sender, "phone-1/req-2"), nil)
	_ = b.Set(dedupKey(nil, m.ChatID, m.Sender, "req-2"), appendSeq(nil, m.Seq), nil)
	_ = b.Delete(dedupFormatKey, nil)
	if err := b.Commit(pdb.Sync); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for range 2 { // marked on the first open, read on the second
		s = openOn(t, fs)
		if !s.unscoped {
			t.Fatal("a database holding old keys is not marked unscoped")
		}
		storetest.CheckUnscopedKey(t, s, m)
		s.Close()
	}
}

// TestCeilings: an append reads rows only at or below its chat's ceiling,
// so the ceiling must be right however the store learnt it: from a
// reopened database, after its map was emptied, and with rows stored out
// of seq order.
func TestCeilings(t *testing.T) {
	ctx := t.Context()
	fs := vfs.NewMem()
	cfg := Default()
	cfg.Dir = "/db"
	open := func() *Store {
		s, err := OpenFS(cfg, fs, nil)
		if err != nil {
			t.Fatalf("OpenFS: %v", err)
		}
		return s
	}
	const chat = "g:ceil"
	other := func(m record.Message) record.Message { m.Body = "other"; return m }
	appendOne := func(s *Store, msgs ...record.Message) record.AppendResult {
		return s.AppendMessages(ctx, []record.ChatAppend{{Msgs: msgs}})[0]
	}
	s := open()
	if r := appendOne(s, storetest.Msgs(chat, 1, 3)...); r.Err != nil || r.Stored != 3 {
		t.Fatalf("append 1..3: %+v", r)
	}
	s.Close()

	s = open()
	defer s.Close()
	tests := []struct {
		name     string
		before   func()
		msgs     []record.Message
		conflict bool
		stored   int
	}{
		{"ReopenedConflict", nil, []record.Message{other(storetest.Msg(chat, 2))}, true, 0},
		{"ReopenedRetry", nil, storetest.Msgs(chat, 1, 3), false, 3},
		{"EmptiedConflict", func() { clear(s.ceilings[fnv32(chat)%chatStripes]) }, []record.Message{other(storetest.Msg(chat, 3))}, true, 0},
		{"Above", nil, []record.Message{storetest.Msg(chat, 10)}, false, 1},
		{"BelowNew", nil, []record.Message{storetest.Msg(chat, 5)}, false, 1},
		{"BelowConflict", nil, []record.Message{other(storetest.Msg(chat, 5))}, true, 0},
		{"TopConflict", nil, []record.Message{other(storetest.Msg(chat, 10))}, true, 0},
	}
	for _, tc := range tests {
		if tc.before != nil {
			tc.before()
		}
		r := appendOne(s, tc.msgs...)
		if got := errors.Is(r.Err, record.ErrConflict); got != tc.conflict || r.Stored != tc.stored || (!tc.conflict && r.Err != nil) {
			t.Fatalf("%s: got %+v, want stored %d, conflict %v", tc.name, r, tc.stored, tc.conflict)
		}
	}
}
