package client

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Client is a connection to a Parley server that reconnects by itself.
// All methods are safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // lifetime: canceled by Close or a permanent stop
	cancel context.CancelFunc

	msgs     chan Message
	receipts chan Receipt
	presence chan UserPresence
	states   chan State
	inbox    chan inEvent    // reader -> delivery goroutine, in arrival order
	fills    chan fillResult // gap fetchers and resyncs -> delivery goroutine
	ackKick  chan struct{}   // delivery goroutine -> ack goroutine (capacity 1)
	// refreshKick tells the refresh goroutine the token or the connection
	// changed (capacity 1).
	refreshKick chan struct{}
	ho          *handoff  // positions handed to the app; own lock
	sends       sendQueue // per destination, sends in call order; own lock

	wg        sync.WaitGroup // run, deliver, ack, refresh and gap fetch goroutines
	done      chan struct{}  // closed once every goroutine exited and channels are closed
	closeOnce sync.Once

	mu      sync.Mutex     // guards the following
	conn    *wsclient.Conn // current connection; nil while reconnecting
	gen     uint64         // incremented for every new connection
	hello   Hello          // current session
	ready   chan struct{}
	pending map[string]*call
	state   State
	stopErr error     // non-nil once stopped for good (wraps ErrClosed)
	token   string    // the token of the current session (the last one accepted)
	tokenAt time.Time // when token was obtained from TokenFunc or Config.Token
	url     string    // current server URL (a goaway may change it)
	stats   Stats
	// syncedCh is closed once the current connection's catch-up is
	// complete (synced is then true); replaced when the connection drops.
	syncedCh chan struct{}
	synced   bool
	ownSends map[string]int // request ids of sends in flight -> count
}

type evKind uint8

const (
	evMsg         evKind = iota // a msg frame, or the seq of our own sent
	evSynced                    // the catch-up of connection gen is complete
	evSyncRefused               // the server of connection gen refused sync
)

type inEvent struct {
	kind evKind
	msg  Message
	own  bool   // sent by this client: advances the position only
	push bool   // a msg frame (not a sent)
	gen  uint64 // evSynced, evSyncRefused: the connection
}

type fillResult struct {
	chat   string
	before uint64 // gap fetch: the held seq the gap ends at
	msgs   []Message
	err    error
	resync bool // from a resync after reconnect, not a gap fetch
}

type call struct {
	ch  chan result // capacity 1
	gen uint64      // connection the request was written on
}

type result struct {
	f   *serverFrame
	err error
}

// Dial connects to cfg.URL, waits for the server's hello, sends the sync
// frame (positions from cfg.Resume) and returns a running Client; the
// server's catch-up then flows to Messages (see WaitSynced). If the first connection fails Dial returns the error
// (a *HandshakeError for a refused upgrade, a *CloseError or *Error if the
// server refused the session); later drops are handled by reconnecting
// with full-jitter exponential backoff, except after close codes 4001,
// 4005 and 1008 (see Config.TokenFunc). ctx bounds only the first
// connection.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot dial: invalid config: %w", err)
	}
	c := &Client{
		cfg:         cfg,
		log:         cfg.Logger,
		msgs:        make(chan Message, cfg.MessageBuffer),
		receipts:    make(chan Receipt, cfg.EventBuffer),
		presence:    make(chan UserPresence, cfg.EventBuffer),
		states:      make(chan State, 8),
		inbox:       make(chan inEvent, 256),
		fills:       make(chan fillResult),
		ackKick:     make(chan struct{}, 1),
		refreshKick: make(chan struct{}, 1),
		ho:          newHandoff(cfg.Resume),
		done:        make(chan struct{}),
		ready:       make(chan struct{}),
		pending:     make(map[string]*call),
		url:         cfg.URL,
		syncedCh:    make(chan struct{}),
		ownSends:    make(map[string]int),
	}
	cn, hello, err := c.connect(ctx)
	if err == nil {
		var syncID string
		if syncID, err = c.writeSync(cn); err == nil {
			c.ctx, c.cancel = context.WithCancel(context.Background())
			s := c.setConn(cn, hello, syncID)
			c.wg.Add(3)
			go c.run(s)
			go c.deliverLoop()
			go c.ackLoop()
			if cfg.TokenFunc != nil {
				c.wg.Add(1)
				go c.refreshLoop()
			}
		} else {
			cn.CloseWith(proto.CloseNormal, "")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot dial %s: %w", cfg.URL, err)
	}
	go func() {
		c.wg.Wait()
		c.mu.Lock()
		st := State{Kind: StateClosed, Err: c.stopErr}
		c.mu.Unlock()
		c.pushState(st)
		close(c.msgs)
		close(c.receipts)
		close(c.presence)
		close(c.states)
		close(c.done)
	}()
	return c, nil
}

// Messages returns the channel of delivered messages. Each (chat, seq) is
// delivered exactly once and, per chat, in increasing seq order without
// gaps, starting right after the chat's position: Config.Resume, else 0
// (the server pushes a new device the whole history of its chats; see
// Config.FromNow to skip it). On every (re)connect the client sends sync
// with its positions and the server pushes what it missed; duplicates
// (retransmits, overlap after a reconnect) are dropped and counted. A
// message that arrives after a gap is held up to Config.GapWait for the
// server to fill it, then the missing ones are fetched with a history
// request; only when the server confirms they do not exist (or refuses the
// chat) is the gap skipped (logged, Stats.GapsSkipped). Messages this
// client sent itself are not delivered (Send returned them); those from
// the same user's other devices are. Once the app has taken a message from
// the channel its position is acknowledged to the server (batched,
// cumulative per chat, within Config.AckInterval) and reported by
// Positions; messages still in the buffer are not, so the server's flow
// control pauses a chat when the app stops reading. If the app stops
// reading, the client stops reading the connection once the buffer is
// full: messages are never dropped. The channel is closed when the client
// stops. Safe for concurrent use.
func (c *Client) Messages() <-chan Message { return c.msgs }

// Receipts returns the channel of delivery receipts for messages of chats
// this user is in. When it is full new receipts are dropped and counted
// (Stats.DroppedReceipts); receipts are cumulative, so a later one
// supersedes a dropped one. Closed when the client stops. Safe for
// concurrent use.
func (c *Client) Receipts() <-chan Receipt { return c.receipts }

// PresenceEvents returns the channel of presence changes pushed by the
// server. When it is full new events are dropped and counted
// (Stats.DroppedPresence). Closed when the client stops. Safe for
// concurrent use.
func (c *Client) PresenceEvents() <-chan UserPresence { return c.presence }

// States returns the channel of connection state changes (connected,
// reconnecting, closed). It holds the latest 8 changes; when the app lags,
// the oldest are discarded, so the last value read is always current. The
// final value is StateClosed, then the channel is closed. Safe for
// concurrent use.
func (c *Client) States() <-chan State { return c.states }

// State returns the current connection state. Safe for concurrent use.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Hello returns the current (or last) session's hello. Safe for
// concurrent use.
func (c *Client) Hello() Hello {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello
}

// WaitSynced blocks until the current connection's catch-up is complete:
// the server answered the sync with synced and every message it pushed
// before that has been put on Messages (so a reader of Messages sees them;
// if nobody reads and the buffer is full, WaitSynced waits for the app).
// While disconnected it waits for the next connection's catch-up. With a
// server that refuses sync, it returns once the refusal arrived (the
// client then catches up from history in the background). It returns
// ctx's error, or ErrClosed (possibly wrapping why) when the client
// stops. Safe for concurrent use.
func (c *Client) WaitSynced(ctx context.Context) error {
	c.mu.Lock()
	ch, stopErr := c.syncedCh, c.stopErr
	c.mu.Unlock()
	if stopErr != nil {
		return stopErr
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return c.closedErr()
	}
}

// Positions returns a snapshot of the client's positions: chat id -> the
// highest seq such that the app has taken every message of the chat up to
// it from Messages (or the chat's own sends and skipped history cover it).
// Chats never seen are absent; Config.Resume entries are included. An app
// that persists this map (ideally from the goroutine that reads Messages,
// after processing what it read) and passes it back as Config.Resume on
// its next start gets a gap-free continuation: the server pushes only the
// messages after these positions, nothing is downloaded again, nothing is
// lost (a server cursor that got ahead is filled from history). While
// Messages is full, the message the client is waiting to put on it may be
// counted only a moment after the app took it (a position one behind,
// never ahead: at worst one message comes again after a restart). Safe
// for concurrent use.
func (c *Client) Positions() map[string]uint64 {
	return c.ho.positions(c.msgsLen)
}

// msgsLen returns the number of messages waiting in Messages.
func (c *Client) msgsLen() int { return len(c.msgs) }

// URL returns the server URL the client (re)connects to: Config.URL, or
// the url of the last goaway that named one. Safe for concurrent use.
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// Stats returns counters since Dial. Safe for concurrent use.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Err returns why the client stopped for good (wrapping ErrClosed and a
// *CloseError or *HandshakeError), or nil while it runs or after Close.
// Safe for concurrent use.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopErr
}

// Done returns a channel closed once the client stopped (Close or a
// permanent refusal) and every goroutine exited. Safe for concurrent use.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection (close code 1000), stops reconnecting, fails
// pending requests with ErrClosed, and waits for the client's goroutines
// to exit. Undelivered messages are not acknowledged, so the server
// delivers them again to the next session. Idempotent; safe for concurrent
// use; always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.mu.Lock()
		cn := c.conn
		c.mu.Unlock()
		if cn != nil {
			cn.CloseWith(proto.CloseNormal, "")
		}
	})
	<-c.done
	return nil
}

// NewRequestID returns a random 128-bit request id in hex. Safe for
// concurrent use.
func NewRequestID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Send posts body to the existing chat chatID and returns once the message
// is durable. The request id is generated once and reused on every retry
// (Config.SendRetry), so the server stores the message at most once.
// Concurrent sends to one destination go out one at a time in the order
// they were made, so a retried send is never overtaken by a later one.
// Errors: *Error from the server (errors.As), ErrDisconnected, ErrTimeout,
// ErrClosed, or ctx's error. Safe for concurrent use.
func (c *Client) Send(ctx context.Context, chatID, body string) (Sent, error) {
	return c.send(ctx, NewRequestID(), chatID, "", body)
}

// SendTo posts body to the 1-on-1 chat with user (created on the first
// message). Sent.Chat is the chat's id. Like Send otherwise. Safe for
// concurrent use.
func (c *Client) SendTo(ctx context.Context, user, body string) (Sent, error) {
	return c.send(ctx, NewRequestID(), "", user, body)
}

// SendWithID is Send with a caller-chosen request id, for idempotency
// tests and for apps that persist their outbox. dest is a chat id when it
// contains ':' ("g:...", "dm:a:b"), otherwise a user id (a 1-on-1 send,
// like SendTo). Safe for concurrent use.
func (c *Client) SendWithID(ctx context.Context, requestID, dest, body string) (Sent, error) {
	if strings.Contains(dest, ":") {
		return c.send(ctx, requestID, dest, "", body)
	}
	return c.send(ctx, requestID, "", dest, body)
}

func (c *Client) send(ctx context.Context, id, chat, to, body string) (Sent, error) {
	dest := chat
	if dest == "" {
		dest = "user " + to
	}
	// One queue per chat: a 1-on-1 chat reached with SendTo and with Send
	// (its dm: id) is one destination once this user is known.
	key := dest
	c.mu.Lock()
	if me := c.hello.User; chat == "" && me != "" && record.ValidID(to) && to != me {
		key = record.DirectChatID(me, to)
	}
	c.mu.Unlock()
	wait, done := c.sends.enter(key)
	defer done()
	if err := wait(ctx); err != nil {
		return Sent{}, fmt.Errorf("cannot send message %s to %s: %w", id, dest, err)
	}
	c.mu.Lock()
	c.ownSends[id]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.ownSends[id]--; c.ownSends[id] <= 0 {
			delete(c.ownSends, id)
		}
		c.mu.Unlock()
	}()
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeSend, ID: id, Chat: chat, To: to, Body: &body}, c.cfg.SendRetry)
	if err != nil {
		return Sent{}, fmt.Errorf("cannot send message %s to %s: %w", id, dest, err)
	}
	if f.Type != proto.TypeSent || f.Seq == 0 {
		return Sent{}, fmt.Errorf("cannot send message %s: %w: answer %q", id, ErrProtocol, f.Type)
	}
	return Sent{RequestID: id, Chat: f.Chat, Seq: f.Seq, Time: msTime(f.TS)}, nil
}

// History returns a page of chat's messages in ascending seq order and
// whether more messages exist beyond the page. Safe for concurrent use.
func (c *Client) History(ctx context.Context, chat string, q HistoryQuery) ([]Message, bool, error) {
	in := proto.Inbound{Type: proto.TypeHistory, ID: NewRequestID(), Chat: chat, Before: q.Before, Limit: q.Limit}
	if q.Before == 0 && (q.After > 0 || q.FromStart) { // Before wins
		in.After = &q.After
	}
	f, err := c.do(ctx, in, c.cfg.SendRetry)
	if err != nil {
		return nil, false, fmt.Errorf("cannot fetch history of chat %s: %w", chat, err)
	}
	if f.Type != proto.TypeHistory {
		return nil, false, fmt.Errorf("cannot fetch history of chat %s: %w: answer %q", chat, ErrProtocol, f.Type)
	}
	out := make([]Message, len(f.Messages))
	for i := range f.Messages {
		out[i] = f.Messages[i].message()
	}
	return out, f.More, nil
}

// Chats returns the user's chat list with unread counts. Safe for
// concurrent use.
func (c *Client) Chats(ctx context.Context) ([]ChatInfo, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeChats, ID: NewRequestID()}, c.cfg.SendRetry)
	if err != nil {
		return nil, fmt.Errorf("cannot list chats: %w", err)
	}
	if f.Type != proto.TypeChats {
		return nil, fmt.Errorf("cannot list chats: %w: answer %q", ErrProtocol, f.Type)
	}
	return f.Chats, nil
}

// CreateGroup creates a group named name with the caller and members and
// returns its chat id. The server derives the group id from (creator,
// request id), so it is retried like Send under Config.SendRetry. Safe for
// concurrent use.
func (c *Client) CreateGroup(ctx context.Context, name string, members []string) (string, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeGroupCreate, ID: NewRequestID(), Name: name, Members: members}, c.cfg.SendRetry)
	if err != nil {
		return "", fmt.Errorf("cannot create group %q: %w", name, err)
	}
	if f.Chat == "" {
		return "", fmt.Errorf("cannot create group %q: %w: answer without chat", name, ErrProtocol)
	}
	return f.Chat, nil
}

// AddMember adds user to the group chat. It returns the seq of the system
// message recording the change (0 if the server sent none). Not retried
// automatically. Safe for concurrent use.
func (c *Client) AddMember(ctx context.Context, chat, user string) (uint64, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeGroupAdd, ID: NewRequestID(), Chat: chat, User: user}, false)
	if err != nil {
		return 0, fmt.Errorf("cannot add %s to chat %s: %w", user, chat, err)
	}
	return f.Seq, nil
}

// RemoveMember removes user from the group chat; see AddMember. Safe for
// concurrent use.
func (c *Client) RemoveMember(ctx context.Context, chat, user string) (uint64, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeGroupRemove, ID: NewRequestID(), Chat: chat, User: user}, false)
	if err != nil {
		return 0, fmt.Errorf("cannot remove %s from chat %s: %w", user, chat, err)
	}
	return f.Seq, nil
}

// Group roles for SetRole (docs/protocol.md, "Groups and roles").
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// SetRole makes user an admin of the group chat (RoleAdmin) or a plain
// member again (RoleMember); only admins may. It returns the seq of the
// role_changed event (0 when the role was already so). Not retried
// automatically, like AddMember. Safe for concurrent use.
func (c *Client) SetRole(ctx context.Context, chat, user, role string) (uint64, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeGroupRole, ID: NewRequestID(), Chat: chat, User: user, Role: role}, false)
	if err != nil {
		return 0, fmt.Errorf("cannot make %s %s in chat %s: %w", user, role, chat, err)
	}
	return f.Seq, nil
}

// Leave removes the caller from the group chat; see AddMember. Safe for
// concurrent use.
func (c *Client) Leave(ctx context.Context, chat string) (uint64, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeGroupLeave, ID: NewRequestID(), Chat: chat}, false)
	if err != nil {
		return 0, fmt.Errorf("cannot leave chat %s: %w", chat, err)
	}
	return f.Seq, nil
}

// Members returns the chat's members. Safe for concurrent use.
func (c *Client) Members(ctx context.Context, chat string) ([]string, error) {
	g, err := c.GroupMembers(ctx, chat)
	return g.Members, err
}

// Group is a chat's membership as the members frame gives it.
type Group struct {
	Members []string // sorted
	Admins  []string // groups only: the members with the admin or creator role, sorted
	Creator string   // groups only: the creator, while a member
}

// GroupMembers returns the chat's members with a group's admins and
// creator. Safe for concurrent use.
func (c *Client) GroupMembers(ctx context.Context, chat string) (Group, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeMembers, ID: NewRequestID(), Chat: chat}, c.cfg.SendRetry)
	if err != nil {
		return Group{}, fmt.Errorf("cannot list members of chat %s: %w", chat, err)
	}
	if f.Type != proto.TypeMembers {
		return Group{}, fmt.Errorf("cannot list members of chat %s: %w: answer %q", chat, ErrProtocol, f.Type)
	}
	return Group{Members: f.Members, Admins: f.Admins, Creator: f.Creator}, nil
}

// Presence asks for the users' presence. Safe for concurrent use.
func (c *Client) Presence(ctx context.Context, users ...string) ([]UserPresence, error) {
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypePresence, ID: NewRequestID(), Users: users}, c.cfg.SendRetry)
	if err != nil {
		return nil, fmt.Errorf("cannot get presence: %w", err)
	}
	if f.Type != proto.TypePresence {
		return nil, fmt.Errorf("cannot get presence: %w: answer %q", ErrProtocol, f.Type)
	}
	return f.presence(), nil
}

// Settings are the user's settings (docs/protocol.md, Settings).
type Settings struct {
	// HideLastSeen withholds the user's last-seen time from everyone else.
	HideLastSeen bool
}

// Settings returns the user's settings. Safe for concurrent use.
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	return c.settings(ctx, nil)
}

// SetHideLastSeen hides (or shows again) the user's last-seen time from
// everyone else and returns the settings after the change. Safe for
// concurrent use.
func (c *Client) SetHideLastSeen(ctx context.Context, hide bool) (Settings, error) {
	return c.settings(ctx, &hide)
}

func (c *Client) settings(ctx context.Context, hideLastSeen *bool) (Settings, error) {
	// A retried change sets the same value again: safe to retry.
	f, err := c.do(ctx, proto.Inbound{Type: proto.TypeSettings, ID: NewRequestID(), HideLastSeen: hideLastSeen}, c.cfg.SendRetry)
	if err != nil {
		return Settings{}, fmt.Errorf("cannot get settings: %w", err)
	}
	if f.Type != proto.TypeSettings {
		return Settings{}, fmt.Errorf("cannot get settings: %w: answer %q", ErrProtocol, f.Type)
	}
	return Settings{HideLastSeen: *f.HideLastSeen}, nil
}

// Ping sends an application-level ping and returns the round-trip time.
// Safe for concurrent use.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := c.do(ctx, proto.Inbound{Type: proto.TypePing, ID: NewRequestID()}, c.cfg.SendRetry); err != nil {
		return 0, fmt.Errorf("cannot ping: %w", err)
	}
	return time.Since(start), nil
}

// MarkRead tells the server the user read chat up to seq (a read frame;
// the server sends no answer). It waits for a connection within ctx and
// Config.RequestTimeout. Safe for concurrent use.
func (c *Client) MarkRead(ctx context.Context, chat string, seq uint64) error {
	b, err := json.Marshal(proto.Inbound{Type: proto.TypeRead, Chat: chat, Seq: seq})
	if err != nil {
		return fmt.Errorf("cannot encode read frame: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	cn, _, err := c.waitConn(actx)
	if err != nil {
		return fmt.Errorf("cannot mark chat %s read: %w", chat, c.attemptErr(ctx, err))
	}
	if err := cn.WriteText(b); err != nil {
		return fmt.Errorf("cannot mark chat %s read: %w: %w", chat, ErrDisconnected, err)
	}
	return nil
}

// do runs one request, retrying retryable failures when retry is set.
func (c *Client) do(ctx context.Context, req proto.Inbound, retry bool) (*serverFrame, error) {
	frame, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("cannot encode %s request: %w", req.Type, err)
	}
	var lastErr error // of the previous attempt
	for attempt := 0; ; attempt++ {
		f, err := c.roundTrip(ctx, req.ID, frame)
		if err == nil {
			return f, nil
		}
		if ctx.Err() != nil && lastErr != nil {
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), lastErr)
		}
		if !retry || !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		lastErr = err
		delay := jitter(c.cfg.RetryBackoff, attempt)
		var se *Error
		if errors.As(err, &se) && se.RetryAfter > delay {
			delay = se.RetryAfter
		}
		c.mu.Lock()
		c.stats.Retries++
		c.mu.Unlock()
		c.log.Debug("retrying request", "request_id", req.ID, "type", req.Type, "attempt", attempt+1, "delay", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-c.ctx.Done():
			t.Stop()
			return nil, c.closedErr()
		}
	}
}

func retryable(err error) bool {
	if errors.Is(err, ErrDisconnected) || errors.Is(err, ErrTimeout) {
		return true
	}
	var se *Error
	return errors.As(err, &se) && se.Retryable
}

// roundTrip makes one attempt: wait for a connection, write, wait for the
// answer, all within RequestTimeout.
func (c *Client) roundTrip(ctx context.Context, id string, frame []byte) (*serverFrame, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	cn, gen, err := c.waitConn(actx)
	if err != nil {
		return nil, c.attemptErr(ctx, err)
	}
	cl := &call{ch: make(chan result, 1), gen: gen}
	c.mu.Lock()
	if c.gen != gen || c.conn == nil {
		c.mu.Unlock()
		return nil, ErrDisconnected
	}
	c.pending[id] = cl
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.pending[id] == cl {
			delete(c.pending, id)
		}
		c.mu.Unlock()
	}()
	if err := cn.WriteText(frame); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	select {
	case r := <-cl.ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.f.Type == proto.TypeError {
			return nil, r.f.err()
		}
		return r.f, nil
	case <-actx.Done():
		return nil, c.attemptErr(ctx, actx.Err())
	case <-c.ctx.Done():
		return nil, c.closedErr()
	}
}

// attemptErr maps an attempt context's error: the caller's own
// cancellation passes through, the attempt timeout becomes ErrTimeout.
func (c *Client) attemptErr(parent context.Context, err error) error {
	if perr := parent.Err(); perr != nil {
		return perr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	return err
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopErr != nil {
		return c.stopErr
	}
	return ErrClosed
}

// waitConn returns the current connection, waiting for a reconnect.
func (c *Client) waitConn(ctx context.Context) (*wsclient.Conn, uint64, error) {
	for {
		c.mu.Lock()
		if c.stopErr != nil {
			err := c.stopErr
			c.mu.Unlock()
			return nil, 0, err
		}
		if c.ctx.Err() != nil {
			c.mu.Unlock()
			return nil, 0, ErrClosed
		}
		if c.conn != nil {
			cn, gen := c.conn, c.gen
			c.mu.Unlock()
			return cn, gen, nil
		}
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-c.ctx.Done():
			return nil, 0, c.closedErr()
		}
	}
}

// jitter returns a full-jitter delay for attempt n.
func jitter(b Backoff, n int) time.Duration {
	d := b.Min
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}
