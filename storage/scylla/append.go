package scylla

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
)

// Statements of messages, buckets and dedup keys.
const (
	insertMessage = `INSERT INTO messages (chat_id, bucket, seq, sender, device, request_id, ts, kind, body, wid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`
	deleteMessage = `DELETE FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ? IF wid = ?`
	selectMessage = `SELECT seq, sender, device, request_id, ts, kind, body FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?`
	selectDesc    = `SELECT seq, sender, device, request_id, ts, kind, body FROM messages WHERE chat_id = ? AND bucket = ? AND seq < ? LIMIT ?`
	selectAsc     = `SELECT seq, sender, device, request_id, ts, kind, body FROM messages WHERE chat_id = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?`
	selectNewest  = `SELECT seq FROM messages WHERE chat_id = ? AND bucket = ? LIMIT 1`

	insertBucket      = `INSERT INTO chat_buckets (chat_id, bucket) VALUES (?, ?)`
	selectBuckets     = `SELECT bucket FROM chat_buckets WHERE chat_id = ?`
	selectBucketsDesc = `SELECT bucket FROM chat_buckets WHERE chat_id = ? AND bucket <= ?`
	selectBucketsAsc  = `SELECT bucket FROM chat_buckets WHERE chat_id = ? AND bucket >= ? ORDER BY bucket ASC`

	insertDedup = `INSERT INTO dedup (chat_id, sender, request_id, seq) VALUES (?, ?, ?, ?) USING TTL ?`
	deleteDedup = `DELETE FROM dedup WHERE chat_id = ? AND sender = ? AND request_id = ?`
	selectDedup = `SELECT seq FROM dedup WHERE chat_id = ? AND sender = ? AND request_id = ?`
)

// bucketPageSize is how many chat_buckets rows a walk fetches at a time.
const bucketPageSize = 8

// part is the messages of one batch that share a partition (chat, bucket),
// in ascending seq order.
type part struct {
	chat   string
	bucket int64
	msgs   []*record.Message
}

// AppendMessages stores msgs and their dedup keys. See doc.go, "Sequence
// safety" and "Atomicity", for how it stays all-or-nothing: each partition's
// rows go in one conditional batch (a lightweight transaction); if any
// partition conflicts, the partitions of this call that did apply are
// deleted again (by conditional deletes that match this call's write id)
// before ErrConflict is returned. Dedup keys are written first and verified
// on lookup (see step 1). Safe for concurrent use.
func (s *Store) AppendMessages(ctx context.Context, msgs []record.Message) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if len(msgs) == 0 {
		return nil
	}
	parts, err := s.partition(msgs)
	if err != nil {
		return fmt.Errorf("cannot append messages: %w", err)
	}
	wid, err := gocql.RandomUUID()
	if err != nil {
		return fmt.Errorf("cannot append messages: %w", err)
	}

	// 1. Dedup keys first. A dedup row is only a hint: LookupDedup trusts
	// it only when the message row at that seq carries the same sender and
	// request id. Written before the rows, a crash between the rows and the
	// client's "sent" can never leave a stored message that a retry fails
	// to find (which would store it twice). A refused append leaves its
	// dedup rows behind; they point at rows that are not theirs and read as
	// missing.
	var keyed []*record.Message
	for i := range msgs {
		if msgs[i].RequestID != "" {
			keyed = append(keyed, &msgs[i])
		}
	}
	if errs := s.fanout(len(keyed), func(i int) error {
		m := keyed[i]
		return s.write(ctx, insertDedup, m.ChatID, m.Sender, m.RequestID, int64(m.Seq), s.dedupTTL).Exec()
	}); errs != nil {
		return fmt.Errorf("cannot append messages: cannot store dedup keys: %w", mapErr(firstErr(errs)))
	}

	// 2. Bucket markers, so that a message row never exists in a bucket
	// LastSeq and the page walks cannot find.
	if err := s.markBuckets(ctx, parts); err != nil {
		return fmt.Errorf("cannot append messages: %w", err)
	}

	// 3. The message rows: one conditional batch per partition.
	applied := make([]bool, len(parts))
	errs := s.fanout(len(parts), func(i int) error {
		var err error
		applied[i], err = s.insertPart(ctx, parts[i], wid)
		return err
	})
	conflict := false
	for i := range parts {
		if (errs == nil || errs[i] == nil) && !applied[i] {
			conflict = true
		}
	}
	if conflict || errs != nil {
		// Undo every partition that applied or whose outcome is unknown.
		var undo []*part
		for i, p := range parts {
			if applied[i] || (errs != nil && errs[i] != nil) {
				undo = append(undo, p)
			}
		}
		rbErr := s.rollback(ctx, undo, wid, nil)
		if conflict {
			return errors.Join(fmt.Errorf("cannot append messages: %w", record.ErrConflict), rbErr)
		}
		return errors.Join(fmt.Errorf("cannot append messages: %w", mapErr(firstErr(errs))), rbErr)
	}

	return nil
}

// partition validates msgs and groups them by (chat, bucket).
func (s *Store) partition(msgs []record.Message) ([]*part, error) {
	type seqKey struct {
		chat string
		seq  uint64
	}
	seen := make(map[seqKey]struct{}, len(msgs))
	byKey := make(map[bucketKey]*part, 2)
	var parts []*part
	for i := range msgs {
		m := &msgs[i]
		if m.ChatID == "" {
			return nil, errors.New("message with an empty chat id")
		}
		if m.Seq == 0 || m.Seq > math.MaxInt64 {
			return nil, fmt.Errorf("message %s/%d: seq out of range", m.ChatID, m.Seq)
		}
		k := seqKey{m.ChatID, m.Seq}
		if _, dup := seen[k]; dup {
			return nil, fmt.Errorf("seq %d of chat %s twice in one batch: %w", m.Seq, m.ChatID, record.ErrConflict)
		}
		seen[k] = struct{}{}
		bk := bucketKey{m.ChatID, int64(m.Seq / s.bucketSize)}
		p := byKey[bk]
		if p == nil {
			p = &part{chat: bk.chat, bucket: bk.bucket}
			byKey[bk] = p
			parts = append(parts, p)
		}
		p.msgs = append(p.msgs, m)
	}
	for _, p := range parts {
		slices.SortFunc(p.msgs, func(a, b *record.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return parts, nil
}

// markBuckets writes the chat_buckets rows of parts that this process has
// not written yet.
func (s *Store) markBuckets(ctx context.Context, parts []*part) error {
	var need []bucketKey
	s.bmu.Lock()
	for _, p := range parts {
		k := bucketKey{p.chat, p.bucket}
		if _, ok := s.buckets[k]; !ok {
			need = append(need, k)
		}
	}
	s.bmu.Unlock()
	if len(need) == 0 {
		return nil
	}
	errs := s.fanout(len(need), func(i int) error {
		return s.write(ctx, insertBucket, need[i].chat, need[i].bucket).Exec()
	})
	if err := firstErr(errs); err != nil {
		return fmt.Errorf("cannot mark bucket: %w", mapErr(err))
	}
	s.bmu.Lock()
	if len(s.buckets)+len(need) > maxKnownBuckets {
		clear(s.buckets)
	}
	for _, k := range need {
		s.buckets[k] = struct{}{}
	}
	s.bmu.Unlock()
	return nil
}

// insertPart writes one partition's rows in a conditional batch. It reports
// applied=true also when the batch was refused only because the rows are
// already there with this call's write id: a retry (by the driver or after a
// timeout) of a transaction that did commit.
func (s *Store) insertPart(ctx context.Context, p *part, wid gocql.UUID) (bool, error) {
	b := s.sess.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	for _, m := range p.msgs {
		b.Query(insertMessage, m.ChatID, p.bucket, int64(m.Seq), m.Sender, m.Device, m.RequestID,
			m.TS, int8(m.Kind), []byte(m.Body), wid)
	}
	row := map[string]any{}
	applied, iter, err := s.sess.MapExecuteBatchCAS(b, row)
	if err != nil {
		if iter != nil {
			iter.Close()
		}
		return false, fmt.Errorf("cannot insert into chat %s bucket %d: %w", p.chat, p.bucket, err)
	}
	if applied {
		return true, iter.Close()
	}
	ours, theirs := 0, 0
	for {
		switch w, _ := row["wid"].(gocql.UUID); w {
		case wid:
			ours++
		case gocql.UUID{}:
		default:
			theirs++
		}
		row = map[string]any{}
		if !iter.MapScan(row) {
			break
		}
	}
	if err := iter.Close(); err != nil {
		return false, fmt.Errorf("cannot insert into chat %s bucket %d: %w", p.chat, p.bucket, err)
	}
	return ours > 0 && theirs == 0, nil
}

// rollback deletes the rows of parts written by this call (conditional on
// wid, so another writer's rows are never touched) and the dedup keys of
// keyed. It runs even when ctx is done, bounded by twice the timeout. A
// failure is logged and returned: the rows may then stay (see doc.go).
func (s *Store) rollback(ctx context.Context, parts []*part, wid gocql.UUID, keyed []*record.Message) error {
	if len(parts) == 0 && len(keyed) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.Timeout)
	defer cancel()
	errs := s.fanout(len(keyed), func(i int) error {
		m := keyed[i]
		return s.write(ctx, deleteDedup, m.ChatID, m.Sender, m.RequestID).Exec()
	})
	dErr := firstErr(errs)
	errs = s.fanout(len(parts), func(i int) error {
		p := parts[i]
		b := s.sess.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
		for _, m := range p.msgs {
			b.Query(deleteMessage, p.chat, p.bucket, int64(m.Seq), wid)
		}
		_, iter, err := s.sess.ExecuteBatchCAS(b)
		if err != nil {
			return err
		}
		return iter.Close()
	})
	err := errors.Join(dErr, firstErr(errs))
	if err != nil {
		s.log.Error("cannot roll back a refused append; its rows may stay", "partitions", len(parts), "err", err)
		return fmt.Errorf("cannot roll back refused append: %w", mapErr(err))
	}
	return nil
}

// LastSeq returns the highest seq stored for chat, 0 if none: the newest row
// of the newest non-empty bucket. Safe for concurrent use.
func (s *Store) LastSeq(ctx context.Context, chatID string) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	n, err := s.lastSeq(ctx, chatID)
	if err != nil {
		return 0, fmt.Errorf("cannot read last seq of chat %s: %w", chatID, err)
	}
	return n, nil
}

func (s *Store) lastSeq(ctx context.Context, chatID string) (uint64, error) {
	if chatID == "" {
		return 0, nil
	}
	iter := s.read(ctx, selectBuckets, chatID).PageSize(bucketPageSize).Iter()
	var bucket, seq int64
	for iter.Scan(&bucket) {
		err := s.read(ctx, selectNewest, chatID, bucket).Scan(&seq)
		if errors.Is(err, gocql.ErrNotFound) {
			continue // a marker whose rows were rolled back or never written
		}
		iter.Close()
		if err != nil {
			return 0, mapErr(err)
		}
		return uint64(seq), nil
	}
	if err := iter.Close(); err != nil {
		return 0, mapErr(err)
	}
	return 0, nil
}

// Message returns one message, or ErrNotFound. Safe for concurrent use.
func (s *Store) Message(ctx context.Context, chatID string, seq uint64) (record.Message, error) {
	if err := s.enter(); err != nil {
		return record.Message{}, err
	}
	defer s.mu.RUnlock()
	m, err := s.message(ctx, chatID, seq)
	if err != nil {
		return record.Message{}, fmt.Errorf("cannot read message %s/%d: %w", chatID, seq, err)
	}
	return m, nil
}

func (s *Store) message(ctx context.Context, chatID string, seq uint64) (record.Message, error) {
	if chatID == "" || seq == 0 || seq > math.MaxInt64 {
		return record.Message{}, record.ErrNotFound
	}
	iter := s.read(ctx, selectMessage, chatID, int64(seq/s.bucketSize), int64(seq)).Iter()
	out := scanMessages(iter, chatID, nil, 1)
	if err := iter.Close(); err != nil {
		return record.Message{}, mapErr(err)
	}
	if len(out) == 0 {
		return record.Message{}, record.ErrNotFound
	}
	return out[0], nil
}

// scanMessages appends up to max rows of iter to out.
func scanMessages(iter *gocql.Iter, chatID string, out []record.Message, max int) []record.Message {
	var (
		seq  int64
		kind int8
		body []byte
	)
	for range max {
		m := record.Message{ChatID: chatID}
		if !iter.Scan(&seq, &m.Sender, &m.Device, &m.RequestID, &m.TS, &kind, &body) {
			break
		}
		m.Seq, m.Kind, m.Body = uint64(seq), record.MsgKind(uint8(kind)), string(body)
		out = append(out, m)
	}
	return out
}

// LookupDedup returns the message stored under key, or ErrNotFound. A key
// whose message is gone (a rolled-back append) or belongs to someone else
// counts as missing. Safe for concurrent use.
func (s *Store) LookupDedup(ctx context.Context, key record.DedupKey) (record.Message, error) {
	if err := s.enter(); err != nil {
		return record.Message{}, err
	}
	defer s.mu.RUnlock()
	if key.ChatID == "" || key.RequestID == "" {
		return record.Message{}, fmt.Errorf("cannot look up %+v: %w", key, record.ErrNotFound)
	}
	var seq int64
	if err := s.read(ctx, selectDedup, key.ChatID, key.Sender, key.RequestID).Scan(&seq); err != nil {
		return record.Message{}, fmt.Errorf("cannot look up %+v: %w", key, mapErr(err))
	}
	m, err := s.message(ctx, key.ChatID, uint64(seq))
	if err == nil && (m.Sender != key.Sender || m.RequestID != key.RequestID) {
		err = record.ErrNotFound
	}
	if err != nil {
		return record.Message{}, fmt.Errorf("cannot look up %+v: %w", key, err)
	}
	return m, nil
}

// Messages returns a page of history in ascending seq order, walking the
// chat's buckets from chat_buckets. Safe for concurrent use.
func (s *Store) Messages(ctx context.Context, chatID string, page record.Page) ([]record.Message, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	limit := page.Limit
	if limit <= 0 || limit > record.MaxPageLimit {
		limit = record.MaxPageLimit
	}
	var (
		out []record.Message
		err error
	)
	switch {
	case chatID == "":
		out = []record.Message{}
	case page.Before > 0:
		out, err = s.pageDesc(ctx, chatID, min(page.Before, math.MaxInt64), limit)
	case page.After > 0:
		out, err = s.pageAsc(ctx, chatID, page.After, limit)
	default:
		out, err = s.pageDesc(ctx, chatID, math.MaxInt64, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read history of chat %s: %w", chatID, mapErr(err))
	}
	return out, nil
}

// pageDesc returns up to limit messages with seq < before, ascending.
func (s *Store) pageDesc(ctx context.Context, chatID string, before uint64, limit int) ([]record.Message, error) {
	out := make([]record.Message, 0, min(limit, 64))
	if before <= 1 {
		return out, nil
	}
	iter := s.read(ctx, selectBucketsDesc, chatID, int64((before-1)/s.bucketSize)).PageSize(bucketPageSize).Iter()
	var bucket int64
	for len(out) < limit && iter.Scan(&bucket) {
		rows := s.read(ctx, selectDesc, chatID, bucket, int64(before), limit-len(out)).Iter()
		out = scanMessages(rows, chatID, out, limit-len(out))
		if err := rows.Close(); err != nil {
			iter.Close()
			return nil, err
		}
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// pageAsc returns up to limit messages with seq > after, ascending.
func (s *Store) pageAsc(ctx context.Context, chatID string, after uint64, limit int) ([]record.Message, error) {
	out := make([]record.Message, 0, min(limit, 64))
	if after >= math.MaxInt64 {
		return out, nil
	}
	iter := s.read(ctx, selectBucketsAsc, chatID, int64((after+1)/s.bucketSize)).PageSize(bucketPageSize).Iter()
	var bucket int64
	for len(out) < limit && iter.Scan(&bucket) {
		rows := s.read(ctx, selectAsc, chatID, bucket, int64(after), limit-len(out)).Iter()
		out = scanMessages(rows, chatID, out, limit-len(out))
		if err := rows.Close(); err != nil {
			iter.Close()
			return nil, err
		}
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	return out, nil
}
