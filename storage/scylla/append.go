package scylla

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
)

// Statements of messages, buckets and dedup keys.
const (
	// LWT sequencing: message rows are written only by lightweight
	// transactions.
	insertMessageLWT = `INSERT INTO messages (chat_id, bucket, seq, sender, device, request_id, ts, kind, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`
	// Lease sequencing: message rows are plain writes stamped with the
	// writer's (epoch, seq), fence deletes with (epoch, 0).
	insertMessageAt = `INSERT INTO messages (chat_id, bucket, seq, sender, device, request_id, ts, kind, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
	fenceFrom       = `DELETE FROM messages USING TIMESTAMP ? WHERE chat_id = ? AND bucket = ? AND seq > ?`
	fenceBucket     = `DELETE FROM messages USING TIMESTAMP ? WHERE chat_id = ? AND bucket = ?`

	selectMessage = `SELECT seq, sender, device, request_id, ts, kind, body FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?`
	selectDesc    = `SELECT seq, sender, device, request_id, ts, kind, body FROM messages WHERE chat_id = ? AND bucket = ? AND seq < ? LIMIT ?`
	selectAsc     = `SELECT seq, sender, device, request_id, ts, kind, body FROM messages WHERE chat_id = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?`
	selectNewest  = `SELECT seq FROM messages WHERE chat_id = ? AND bucket = ? LIMIT 1`

	insertBucket      = `INSERT INTO chat_buckets (chat_id, bucket) VALUES (?, ?)`
	selectBuckets     = `SELECT bucket FROM chat_buckets WHERE chat_id = ?`
	selectBucketsDesc = `SELECT bucket FROM chat_buckets WHERE chat_id = ? AND bucket <= ?`
	selectBucketsAsc  = `SELECT bucket FROM chat_buckets WHERE chat_id = ? AND bucket >= ? ORDER BY bucket ASC`

	// Dedup keys (migration 3): one partition per chat, so that a
	// sequencer can load a chat's keys into a filter.
	insertDedupKey  = `INSERT INTO dedup_keys (chat_id, sender, request_id, seq) VALUES (?, ?, ?, ?) USING TTL ?`
	selectDedupKey  = `SELECT seq FROM dedup_keys WHERE chat_id = ? AND sender = ? AND request_id = ?`
	selectDedupKeys = `SELECT sender, request_id FROM dedup_keys WHERE chat_id = ?`
	// The dedup table of migration 1, read only as a fallback while keys
	// written before migration 3 can still be alive (legacyDedupUntil).
	selectLegacyDedup = `SELECT seq FROM dedup WHERE chat_id = ? AND sender = ? AND request_id = ?`
)

// bucketPageSize is how many chat_buckets rows a walk fetches at a time.
const bucketPageSize = 8

// part is the messages of one chat append that share a partition (chat,
// bucket), in ascending seq order.
type part struct {
	chat   string
	bucket int64
	msgs   []record.Message
}

// AppendMessages stores each chat's messages and dedup keys; see doc.go,
// "Sequencing" and "Appends". Chats are written in parallel (at most
// Config.Concurrency at a time) and are independent of each other; within
// a chat, partitions are written one after another in seq order and the
// first failure ends the chat's append, so what a chat has stored is always
// a prefix of its append. Safe for concurrent use.
func (s *Store) AppendMessages(ctx context.Context, appends []record.ChatAppend) []record.AppendResult {
	res := make([]record.AppendResult, len(appends))
	if err := s.enter(); err != nil {
		for i := range res {
			res[i].Err = fmt.Errorf("cannot append messages: %w", err)
		}
		return res
	}
	defer s.mu.RUnlock()
	var todo []int
	seen := make(map[string]struct{}, len(appends))
	for i, a := range appends {
		if err := s.validAppend(a); err != nil {
			res[i].Err = fmt.Errorf("cannot append messages: %w: %w", record.ErrInvalid, err)
			continue
		}
		if _, dup := seen[a.ChatID()]; dup {
			res[i].Err = fmt.Errorf("cannot append messages: %w: chat %s twice in one call", record.ErrInvalid, a.ChatID())
			continue
		}
		seen[a.ChatID()] = struct{}{}
		todo = append(todo, i)
	}
	s.fanout(len(todo), func(k int) error {
		i := todo[k]
		res[i] = s.appendChat(ctx, appends[i])
		return nil
	})
	return res
}

// validAppend checks an append's shape, its seqs' range and, under
// leases, its epoch.
func (s *Store) validAppend(a record.ChatAppend) error {
	if err := a.Validate(); err != nil {
		return err
	}
	last := a.Msgs[len(a.Msgs)-1].Seq
	if s.lease {
		if a.Epoch == 0 || a.Epoch > maxEpoch {
			return fmt.Errorf("append of chat %s at epoch %d: lease sequencing needs an epoch in [1, %d]", a.ChatID(), a.Epoch, maxEpoch)
		}
		if last > maxLeaseSeq {
			return fmt.Errorf("append of chat %s: seq %d above %d, the largest lease sequencing can stamp", a.ChatID(), last, uint64(maxLeaseSeq))
		}
	} else if last > math.MaxInt64 {
		return fmt.Errorf("append of chat %s: seq %d out of range", a.ChatID(), last)
	}
	return nil
}

// appendChat writes one chat's append: its dedup keys, then its partitions
// in order.
func (s *Store) appendChat(ctx context.Context, a record.ChatAppend) record.AppendResult {
	chat := a.ChatID()
	parts := s.partition(a.Msgs)
	// Under LWT the dedup keys go first. A key is only a hint: LookupDedup
	// trusts it only when the message row at its seq carries the same
	// sender and request id, so a key whose rows never land reads as
	// missing. Written before the rows, a crash between the rows and the
	// client's "sent" can never leave a stored message that a retry fails
	// to find. Under leases each partition's keys ride in its rows' batch
	// (one request instead of two): a row can then land without its key
	// only in a write whose outcome its holder never learnt, and the next
	// holder's Fence writes the keys of every row it keeps.
	if !s.lease {
		if err := s.writeDedupKeys(ctx, a.Msgs); err != nil {
			return record.AppendResult{Err: fmt.Errorf("cannot append to chat %s: cannot store dedup keys: %w", chat, mapErr(err))}
		}
	}
	// Bucket markers, so that a message row never exists in a bucket
	// LastSeq and the page walks cannot find.
	if err := s.markBuckets(ctx, parts); err != nil {
		return record.AppendResult{Err: fmt.Errorf("cannot append to chat %s: %w", chat, err)}
	}
	stored := 0
	for _, p := range parts {
		var n int
		var err error
		if s.hookWritePart != nil {
			err = s.hookWritePart(ctx, p)
		}
		switch {
		case err != nil:
		case s.lease:
			n, err = s.writePart(ctx, p, a.Epoch)
		default:
			n, err = s.insertPart(ctx, p)
		}
		stored += n
		if err != nil {
			return record.AppendResult{Stored: stored, Err: err}
		}
	}
	return record.AppendResult{Stored: stored}
}

// partition groups an append's messages by bucket, in seq order.
func (s *Store) partition(msgs []record.Message) []*part {
	var parts []*part
	for i := range msgs {
		b := int64(msgs[i].Seq / s.bucketSize)
		if len(parts) == 0 || parts[len(parts)-1].bucket != b {
			parts = append(parts, &part{chat: msgs[i].ChatID, bucket: b})
		}
		p := parts[len(parts)-1]
		p.msgs = append(p.msgs, msgs[i])
	}
	return parts
}

// writeDedupKeys writes the dedup keys of msgs in one unlogged batch (one
// partition: the chat).
func (s *Store) writeDedupKeys(ctx context.Context, msgs []record.Message) error {
	var b idempotentBatch
	for i := range msgs {
		if msgs[i].RequestID == "" {
			continue
		}
		if b.Batch == nil {
			b = s.idempotentBatch(ctx)
		}
		s.addDedupKey(b, &msgs[i])
	}
	if b.Batch == nil {
		return nil
	}
	return s.sess.ExecuteBatch(b.Batch)
}

// rewriteDedupKeys writes, in one unlogged batch, the dedup keys of the
// messages of msgs whose keys may still be alive (sent less than dedup_ttl
// ago, by their ts), each with what is left of its time to live, so that
// no key outlives dedup_ttl after its message was sent.
func (s *Store) rewriteDedupKeys(ctx context.Context, msgs []record.Message) error {
	now := time.Now().UnixMilli()
	var b idempotentBatch
	for i := range msgs {
		m := &msgs[i]
		left := s.dedupTTL - int((now-m.TS)/1000)
		if m.RequestID == "" || left <= 0 {
			continue
		}
		if b.Batch == nil {
			b = s.idempotentBatch(ctx)
		}
		b.add(insertDedupKey, m.ChatID, m.Sender, record.MessageDedupKey(m).Stored(), int64(m.Seq), min(left, s.dedupTTL))
	}
	if b.Batch == nil {
		return nil
	}
	return s.sess.ExecuteBatch(b.Batch)
}

// addDedupKey adds m's dedup key to b when m has a request id.
func (s *Store) addDedupKey(b idempotentBatch, m *record.Message) {
	if m.RequestID != "" {
		b.add(insertDedupKey, m.ChatID, m.Sender, record.MessageDedupKey(m).Stored(), int64(m.Seq), s.dedupTTL)
	}
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

// writePart writes one partition's rows under leases, with their dedup
// keys, in one unlogged batch: the rows are one mutation (a single
// partition, atomic on each replica) stamped with their (epoch, seq)
// timestamps, the keys a second one (the chat's dedup_keys partition). The
// write is idempotent: a retry writes the same cells with the same
// timestamps, and the same keys.
func (s *Store) writePart(ctx context.Context, p *part, epoch uint64) (int, error) {
	b := s.idempotentBatch(ctx)
	size := 0
	for i := range p.msgs {
		m := &p.msgs[i]
		b.add(insertMessageAt, m.ChatID, p.bucket, int64(m.Seq), m.Sender, m.Device, m.RequestID,
			m.TS, int8(m.Kind), []byte(m.Body), leaseTimestamp(epoch, m.Seq, 0))
		size += rowBytes + 2*len(m.Sender) + 2*len(m.Device) + 2*len(m.RequestID) + len(m.Body)
	}
	if size <= marksBatchBytes {
		// Small enough for a batch of two partitions (see marksBatchBytes).
		for i := range p.msgs {
			s.addDedupKey(b, &p.msgs[i])
		}
		if err := s.sess.ExecuteBatch(b.Batch); err != nil {
			return 0, fmt.Errorf("cannot write to chat %s bucket %d: %w", p.chat, p.bucket, mapErr(err))
		}
		return len(p.msgs), nil
	}
	// Larger: the keys in a batch of their own, sent with the rows'.
	errs := s.fanout(2, func(i int) error {
		if i == 0 {
			return s.sess.ExecuteBatch(b.Batch)
		}
		return s.writeDedupKeys(ctx, p.msgs)
	})
	if err := firstErr(errs); err != nil {
		return 0, fmt.Errorf("cannot write to chat %s bucket %d: %w", p.chat, p.bucket, mapErr(err))
	}
	return len(p.msgs), nil
}

// rowBytes estimates what a message row and its dedup key add to a batch
// besides their strings, as Cassandra sizes a batch (its mutations' data:
// about 16 bytes of timestamp, TTL and deletion time per cell, the values
// and the clustering columns; not the partition key): the row's seven
// cells and the key's one, and the row's and key's liveness. Each message
// also counts its sender and device twice (the row, and the key's
// clustering columns), its request id twice and its body once.
const rowBytes = 170

// insertPart writes one partition's rows under LWT sequencing: a
// conditional batch of INSERT ... IF NOT EXISTS, applied whole or not at
// all. When it is not applied, the rows that exist decide: leading rows
// with exactly our content are ours (stored by an earlier attempt whose
// outcome was unknown, or by the driver's retry of this one) and count as
// stored, and the rest is tried again; a row with other content is a
// conflict. The driver never retries the batch (its entries are not
// marked idempotent); the loop here is the retry.
func (s *Store) insertPart(ctx context.Context, p *part) (int, error) {
	stored := 0
	msgs := p.msgs
	for len(msgs) > 0 {
		b := s.sess.Batch(gocql.UnloggedBatch).WithContext(ctx)
		for i := range msgs {
			m := &msgs[i]
			b.Query(insertMessageLWT, m.ChatID, p.bucket, int64(m.Seq), m.Sender, m.Device, m.RequestID,
				m.TS, int8(m.Kind), []byte(m.Body))
		}
		row := map[string]any{}
		applied, iter, err := s.sess.MapExecuteBatchCAS(b, row)
		if err != nil {
			if iter != nil {
				iter.Close()
			}
			return stored, fmt.Errorf("cannot insert into chat %s bucket %d: %w", p.chat, p.bucket, mapErr(err))
		}
		if applied {
			return stored + len(msgs), iter.Close()
		}
		existing := map[int64]record.Message{}
		for {
			// Only rows that exist count: every stored message has a kind.
			if m := rowMessage(p.chat, row); m.Kind != 0 {
				existing[int64(m.Seq)] = m
			}
			row = map[string]any{}
			if !iter.MapScan(row) {
				break
			}
		}
		if err := iter.Close(); err != nil {
			return stored, fmt.Errorf("cannot insert into chat %s bucket %d: %w", p.chat, p.bucket, mapErr(err))
		}
		// Leading rows that are ours count as stored; any other existing
		// row is a conflict.
		ours := 0
		for ours < len(msgs) {
			got, ok := existing[int64(msgs[ours].Seq)]
			if !ok || got != msgs[ours] {
				break
			}
			ours++
		}
		for i := ours; i < len(msgs); i++ {
			if _, ok := existing[int64(msgs[i].Seq)]; ok {
				return stored + ours, fmt.Errorf("cannot insert message %d into chat %s: %w", msgs[i].Seq, p.chat, record.ErrConflict)
			}
		}
		if ours == 0 {
			// Not applied, yet no row of ours exists: the rows moved
			// between the attempt and its answer (impossible for an
			// append-only table); report the outcome as unknown.
			return stored, fmt.Errorf("cannot insert into chat %s bucket %d: refused without a conflicting row", p.chat, p.bucket)
		}
		stored += ours
		msgs = msgs[ours:]
	}
	return stored, nil
}

// rowMessage turns a row of a not-applied transaction into a Message.
func rowMessage(chat string, row map[string]any) record.Message {
	m := record.Message{ChatID: chat}
	if v, ok := row["seq"].(int64); ok {
		m.Seq = uint64(v)
	}
	m.Sender, _ = row["sender"].(string)
	m.Device, _ = row["device"].(string)
	m.RequestID, _ = row["request_id"].(string)
	m.TS, _ = row["ts"].(int64)
	if v, ok := row["kind"].(int8); ok {
		m.Kind = record.MsgKind(uint8(v))
	}
	if v, ok := row["body"].([]byte); ok {
		m.Body = string(v)
	}
	return m
}

// Lease timestamps: a message row written under leases carries the CQL
// write timestamp
//
//	1<<62 | epoch<<41 | seq<<8 | rev
//
// (21 bits of epoch, 33 of seq, 8 of revision). Ordering by it is ordering
// by (epoch, seq, rev), and every such timestamp sorts above any
// real-clock timestamp in microseconds (about 2^51 today), so a row or
// fence of a later epoch always wins over anything of an earlier one, and
// over anything written with the real clock. rev is 0 today; it leaves room
// for the owner to rewrite a row later (a redaction) so that the rewrite
// wins over the original.
const (
	leaseTSBase  = int64(1) << 62
	maxEpoch     = 1<<21 - 1
	maxLeaseSeq  = 1<<33 - 1
	epochShift   = 41
	seqShiftTS   = 8
	fenceRevBits = 0
)

// leaseTimestamp returns the write timestamp of (epoch, seq, rev).
func leaseTimestamp(epoch, seq uint64, rev uint8) int64 {
	return leaseTSBase | int64(epoch)<<epochShift | int64(seq)<<seqShiftTS | int64(rev)
}

// Fence prepares chatID for a sequencer that starts using it at epoch
// (under leases) and returns the chat's head:
//
//  1. It reads the newest stored seq N, then every row of the span seqs
//     below and at N, whole, at the configured consistency (LOCAL_QUORUM).
//     The read's blocking read repair copies each row the contacted
//     replicas disagree on to all of them, so a row an older holder wrote
//     to one replica only is on a quorum afterwards.
//  2. The head is the end of the dense run of seqs in that window. Rows
//     above a hole were never acknowledged (a holder acknowledges a chat's
//     messages in seq order, and only with everything below them stored;
//     the older holder's acknowledged rows are all within the window and
//     on a quorum), so they are cut off with the rest.
//  3. It deletes, stamped (epoch, 0), everything an older epoch may still
//     write in the span seqs above the head. Such a write landing later (a
//     paused node's, a replayed hint) sorts below the fence and stays
//     invisible; the new epoch's own rows sort above it.
//
// span must be at least the most seqs a holder keeps in flight per chat.
// Safe for concurrent use.
func (s *Store) Fence(ctx context.Context, chatID string, epoch uint64, span int) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	if !s.lease {
		return 0, fmt.Errorf("cannot fence chat %s: the keyspace sequences by lightweight transactions, not leases", chatID)
	}
	if epoch == 0 || epoch > maxEpoch || span < 1 {
		return 0, fmt.Errorf("cannot fence chat %s: epoch %d, span %d out of range", chatID, epoch, span)
	}
	newest, err := s.lastSeq(ctx, chatID)
	if err != nil {
		return 0, fmt.Errorf("cannot fence chat %s: %w", chatID, err)
	}
	head := newest
	if newest > 0 {
		low := newest - min(newest, uint64(span))
		rows, err := s.pageAsc(ctx, chatID, low, span)
		if err != nil {
			return 0, fmt.Errorf("cannot fence chat %s: cannot read its newest rows: %w", chatID, mapErr(err))
		}
		head = low
		kept := 0
		for _, m := range rows {
			if m.Seq != head+1 {
				break
			}
			head = m.Seq
			kept++
		}
		if head < newest {
			s.log.Warn("fencing rows above a hole: an older holder's unacknowledged writes", "chat_id", chatID, "head", head, "newest", newest)
		}
		// The rows kept may include ones whose batch landed without its
		// dedup keys (an older holder's write of unknown outcome, see
		// writePart): write the keys of all of them, so a stored message
		// always has its key.
		if err := s.rewriteDedupKeys(ctx, rows[:kept]); err != nil {
			return 0, fmt.Errorf("cannot fence chat %s: cannot store the dedup keys of its newest rows: %w", chatID, mapErr(err))
		}
	}
	ts := leaseTimestamp(epoch, 0, fenceRevBits)
	first := int64((head + 1) / s.bucketSize)
	last := int64((head + uint64(span)) / s.bucketSize)
	errs := s.fanout(int(last-first+1), func(i int) error {
		b := first + int64(i)
		if i == 0 {
			return s.write(ctx, fenceFrom, ts, chatID, b, int64(head)).Exec()
		}
		return s.write(ctx, fenceBucket, ts, chatID, b).Exec()
	})
	if err := firstErr(errs); err != nil {
		return 0, fmt.Errorf("cannot fence chat %s above %d: %w", chatID, head, mapErr(err))
	}
	return head, nil
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
			continue // a marker whose rows were fenced or never written
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
// whose message is not there (its append never landed) or belongs to
// someone else counts as missing. While keys written before keys were
// scoped per device may be alive (unscopedUntil), a miss falls back to the
// bare request id, matched only when its message came from key.Device.
// Safe for concurrent use.
func (s *Store) LookupDedup(ctx context.Context, key record.DedupKey) (record.Message, error) {
	if err := s.enter(); err != nil {
		return record.Message{}, err
	}
	defer s.mu.RUnlock()
	if key.ChatID == "" || key.RequestID == "" || key.Unscoped {
		return record.Message{}, fmt.Errorf("cannot look up %+v: %w", key, record.ErrNotFound)
	}
	m, err := s.lookupDedup(ctx, selectDedupKey, key, key.Stored())
	if errors.Is(err, record.ErrNotFound) && s.unscopedDedup() {
		m, err = s.lookupDedup(ctx, selectDedupKey, key, key.RequestID)
	}
	if errors.Is(err, record.ErrNotFound) && s.legacyDedup() {
		m, err = s.lookupDedup(ctx, selectLegacyDedup, key, key.RequestID)
	}
	if err != nil {
		return record.Message{}, fmt.Errorf("cannot look up %+v: %w", key, err)
	}
	return m, nil
}

func (s *Store) lookupDedup(ctx context.Context, stmt string, key record.DedupKey, stored string) (record.Message, error) {
	var seq int64
	if err := s.read(ctx, stmt, key.ChatID, key.Sender, stored).Scan(&seq); err != nil {
		return record.Message{}, mapErr(err)
	}
	m, err := s.message(ctx, key.ChatID, uint64(seq))
	if err == nil && (m.Sender != key.Sender || m.RequestID != key.RequestID || !record.UnscopedMatch(&m, key)) {
		err = record.ErrNotFound
	}
	return m, err
}

// DedupKeys returns the keys stored for chatID within the dedup TTL, at
// most limit of them; complete is false when there are more, or when keys
// of an older layout may still be alive (then a caller cannot rule a key
// out without LookupDedup). A key is a hint (see LookupDedup): it may name
// a message that never landed. Safe for concurrent use.
func (s *Store) DedupKeys(ctx context.Context, chatID string, limit int) (keys []record.DedupKey, complete bool, err error) {
	if err := s.enter(); err != nil {
		return nil, false, err
	}
	defer s.mu.RUnlock()
	if s.legacyDedup() {
		return nil, false, nil
	}
	iter := s.read(ctx, selectDedupKeys, chatID).PageSize(1000).Iter()
	var sender, stored string
	complete = true
	for iter.Scan(&sender, &stored) {
		if len(keys) == limit {
			complete = false
			break
		}
		keys = append(keys, record.ParseDedupKey(chatID, sender, stored))
	}
	if err := iter.Close(); err != nil {
		return nil, false, fmt.Errorf("cannot read dedup keys of chat %s: %w", chatID, mapErr(err))
	}
	return keys, complete, nil
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
	case page.After > 0 || page.Forward:
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
