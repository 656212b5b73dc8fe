package term

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/record"
)

const helpText = `commands:
  /to <user> <text>          send to the 1-on-1 chat with user
  /g <chat> <text>           send to a chat (also /send)
  /use <chat|user>           plain lines then go to that chat or user
  /group <name> <member>...  create a group and switch to it
  /add <chat> <user>         add a member
  /remove <chat> <user>      remove a member
  /leave <chat>              leave a group
  /role <chat> <user> admin|member  make a member admin, or an admin member
  /members <chat>            list members
  /chats                     list chats with unread counts
  /history [chat] [n]        show the last n messages (default 20)
  /presence <user>...        show who is online
  /lastseen [show|hide]      show or change whether others see when you were last online
  /help                      this text
  /quit                      exit`

// Run runs an interactive session: it reads lines from in until EOF,
// /quit or ctx is done, and writes to out. It returns nil on EOF or /quit,
// ctx's error when ctx is done, and the client's error when the client
// stopped (e.g. the token expired). It does not close c. When Run returns
// because of ctx or the client, a goroutine may stay blocked reading in
// until in returns; close in to release it. Not safe for concurrent use
// with another Run on the same client.
func Run(ctx context.Context, c *client.Client, in io.Reader, out io.Writer) error {
	s := &session{c: c, out: out, me: c.Hello().User}
	lines := make(chan string)
	readDone := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		readDone <- sc.Err()
	}()

	evCtx, stopEvents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	clientDone := make(chan struct{})
	go func() {
		defer wg.Done()
		s.events(evCtx, clientDone)
	}()
	defer func() {
		stopEvents()
		wg.Wait()
	}()

	s.printf("connected as %s; /help lists commands", s.me)
	for {
		select {
		case line := <-lines:
			if quit := s.command(ctx, line); quit {
				return nil
			}
		case err := <-readDone:
			if err != nil {
				return fmt.Errorf("cannot read input: %w", err)
			}
			return nil
		case <-clientDone:
			if err := c.Err(); err != nil {
				return err
			}
			return client.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type session struct {
	c  *client.Client
	me string

	mu  sync.Mutex // guards the following
	out io.Writer
	cur string // current chat id or user id for plain lines
}

func (s *session) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, format+"\n", args...)
}

// events prints incoming messages, receipts, presence and state changes
// until ctx is done; it closes clientDone when the client stops.
func (s *session) events(ctx context.Context, clientDone chan<- struct{}) {
	msgs, receipts, presence, states := s.c.Messages(), s.c.Receipts(), s.c.PresenceEvents(), s.c.States()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				close(clientDone)
				return
			}
			s.printf("%s", formatMessage(m))
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = s.c.MarkRead(rctx, m.Chat, m.Seq)
			cancel()
		case r, ok := <-receipts:
			if !ok {
				receipts = nil
				continue
			}
			if r.User != s.me {
				s.printf("✓✓ delivered to %s (%s #%d)", r.User, r.Chat, r.Seq)
			}
		case p, ok := <-presence:
			if !ok {
				presence = nil
				continue
			}
			s.printf("* %s is %s", p.User, onlineWord(p.Online))
		case st, ok := <-states:
			if !ok {
				states = nil
				continue
			}
			switch st.Kind {
			case client.StateReconnecting:
				if st.Attempt == 1 {
					s.printf("* connection lost (%v); reconnecting", st.Err)
				}
			case client.StateConnected:
				if !st.Synced && st.Hello.Session != "" && s.c.Stats().Reconnects > 0 {
					s.printf("* reconnected")
				}
			case client.StateClosed:
				if st.Err != nil {
					s.printf("* disconnected: %v", st.Err)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

func onlineWord(b bool) string {
	if b {
		return "online"
	}
	return "offline"
}

func formatMessage(m client.Message) string {
	if m.IsSystem() {
		return fmt.Sprintf("[%s #%d] * %s", m.Chat, m.Seq, describeEvent(m.Body))
	}
	return fmt.Sprintf("[%s #%d] %s: %s", m.Chat, m.Seq, m.From, m.Body)
}

// command runs one input line; it returns true for /quit.
func (s *session) command(ctx context.Context, line string) bool {
	line = strings.TrimSpace(line)
	if line == "" {
		return false
	}
	if !strings.HasPrefix(line, "/") {
		s.mu.Lock()
		cur := s.cur
		s.mu.Unlock()
		if cur == "" {
			s.printf("no current chat: /use <chat|user> first, or /to <user> <text>")
			return false
		}
		s.send(ctx, cur, line)
		return false
	}
	cmd, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimSpace(rest)
	args := strings.Fields(rest)
	usage := func(u string) { s.printf("usage: %s", u) }
	switch cmd {
	case "/quit", "/exit":
		return true
	case "/help":
		s.printf("%s", helpText)
	case "/to":
		user, text, ok := splitFirst(rest)
		if !ok {
			usage("/to <user> <text>")
			return false
		}
		s.send(ctx, user, text)
	case "/g", "/send":
		chat, text, ok := splitFirst(rest)
		if !ok {
			usage(cmd + " <chat> <text>")
			return false
		}
		if !strings.Contains(chat, ":") {
			s.printf("%q is not a chat id (chat ids look like g:... or dm:a:b); use /to for users", chat)
			return false
		}
		s.send(ctx, chat, text)
	case "/use":
		if len(args) != 1 {
			usage("/use <chat|user>")
			return false
		}
		s.mu.Lock()
		s.cur = args[0]
		s.mu.Unlock()
		s.printf("now talking in %s", args[0])
	case "/group":
		if len(args) < 2 {
			usage("/group <name> <member> [member...]")
			return false
		}
		id, err := s.c.CreateGroup(ctx, args[0], args[1:])
		if err != nil {
			s.printf("error: %v", err)
			return false
		}
		s.mu.Lock()
		s.cur = id
		s.mu.Unlock()
		s.printf("created group %s: %s (now talking there)", args[0], id)
	case "/add", "/remove":
		if len(args) != 2 {
			usage(cmd + " <chat> <user>")
			return false
		}
		var err error
		if cmd == "/add" {
			_, err = s.c.AddMember(ctx, args[0], args[1])
		} else {
			_, err = s.c.RemoveMember(ctx, args[0], args[1])
		}
		if err != nil {
			s.printf("error: %v", err)
			return false
		}
		s.printf("ok")
	case "/role":
		if len(args) != 3 || (args[2] != client.RoleAdmin && args[2] != client.RoleMember) {
			usage("/role <chat> <user> admin|member")
			return false
		}
		if _, err := s.c.SetRole(ctx, args[0], args[1], args[2]); err != nil {
			s.printf("error: %v", err)
			return false
		}
		s.printf("%s is %s of %s", args[1], args[2], args[0])
	case "/leave":
		if len(args) != 1 {
			usage("/leave <chat>")
			return false
		}
		if _, err := s.c.Leave(ctx, args[0]); err != nil {
			s.printf("error: %v", err)
			return false
		}
		s.printf("left %s", args[0])
	case "/members":
		if len(args) != 1 {
			usage("/members <chat>")
			return false
		}
		g, err := s.c.GroupMembers(ctx, args[0])
		if err != nil {
			s.printf("error: %v", err)
			return false
		}
		line := fmt.Sprintf("members of %s: %s", args[0], strings.Join(g.Members, ", "))
		if len(g.Admins) > 0 {
			line += fmt.Sprintf(" (admins: %s)", strings.Join(g.Admins, ", "))
		}
		if g.Creator != "" {
			line += fmt.Sprintf(" (creator: %s)", g.Creator)
		}
		s.printf("%s", line)
	case "/chats":
		s.chats(ctx)
	case "/history":
		s.history(ctx, args)
	case "/presence":
		if len(args) == 0 {
			usage("/presence <user> [user...]")
			return false
		}
		ps, err := s.c.Presence(ctx, args...)
		if err != nil {
			s.printf("error: %v", err)
			return false
		}
		for _, p := range ps {
			if !p.Online && !p.LastSeen.IsZero() {
				s.printf("%s: offline (last seen %s)", p.User, p.LastSeen.Format(time.DateTime))
				continue
			}
			s.printf("%s: %s", p.User, onlineWord(p.Online))
		}
	case "/lastseen":
		var st client.Settings
		var err error
		switch {
		case len(args) == 0:
			st, err = s.c.Settings(ctx)
		case len(args) == 1 && (args[0] == "show" || args[0] == "hide"):
			st, err = s.c.SetHideLastSeen(ctx, args[0] == "hide")
		default:
			usage("/lastseen [show|hide]")
			return false
		}
		if err != nil {
			s.printf("error: %v", err)
			return false
		}
		if st.HideLastSeen {
			s.printf("your last seen is hidden from others")
		} else {
			s.printf("others may see when you were last online")
		}
	default:
		s.printf("unknown command %s; /help lists commands", cmd)
	}
	return false
}

// splitFirst splits "word rest of line".
func splitFirst(s string) (first, rest string, ok bool) {
	first, rest, _ = strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	return first, rest, first != "" && rest != ""
}

// send posts text to dest: a chat id (contains ':') or a user id.
func (s *session) send(ctx context.Context, dest, text string) {
	var sent client.Sent
	var err error
	if strings.Contains(dest, ":") {
		sent, err = s.c.Send(ctx, dest, text)
	} else {
		sent, err = s.c.SendTo(ctx, dest, text)
	}
	if err != nil {
		var pe *client.Error
		if errors.As(err, &pe) {
			s.printf("error: %s: %s", pe.Code, pe.Message)
			return
		}
		s.printf("error: %v", err)
		return
	}
	s.printf("sent #%d (%s)", sent.Seq, sent.Chat)
}

func (s *session) chats(ctx context.Context) {
	cs, err := s.c.Chats(ctx)
	if err != nil {
		s.printf("error: %v", err)
		return
	}
	if len(cs) == 0 {
		s.printf("no chats yet")
		return
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Chat < cs[j].Chat })
	for _, ch := range cs {
		name := ch.Name
		if name == "" {
			name = strings.Join(ch.Members, ", ")
		}
		s.printf("%s  %s  %s  unread %d  (last #%d)", ch.Chat, ch.Kind, name, ch.Unread, ch.LastSeq)
	}
}

func (s *session) history(ctx context.Context, args []string) {
	s.mu.Lock()
	chat := s.cur
	s.mu.Unlock()
	n := 20
	for _, a := range args {
		if v, err := strconv.Atoi(a); err == nil {
			n = v
		} else {
			chat = a
		}
	}
	if chat == "" {
		s.printf("usage: /history [chat] [n] (no current chat)")
		return
	}
	if !strings.Contains(chat, ":") {
		chat = record.DirectChatID(s.me, chat)
	}
	if n < 1 || n > 200 {
		s.printf("n must be 1..200")
		return
	}
	msgs, more, err := s.c.History(ctx, chat, client.HistoryQuery{Limit: n})
	if err != nil {
		s.printf("error: %v", err)
		return
	}
	if more {
		s.printf("(older messages exist)")
	}
	for _, m := range msgs {
		s.printf("%s", formatMessage(m))
	}
	if len(msgs) == 0 {
		s.printf("no messages in %s", chat)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = s.c.MarkRead(rctx, chat, msgs[len(msgs)-1].Seq)
}

// describeEvent renders a system message body (a JSON event, see
// docs/protocol.md) as a sentence; unknown events are shown raw.
func describeEvent(body string) string {
	var ev struct {
		Event    string   `json:"event"`
		By       string   `json:"by"`
		User     string   `json:"user"`
		Name     string   `json:"name"`
		Members  []string `json:"members"`
		Role     string   `json:"role"`
		Promoted string   `json:"promoted"`
	}
	if json.Unmarshal([]byte(body), &ev) != nil {
		return "system: " + body
	}
	switch ev.Event {
	case "created":
		return fmt.Sprintf("%s created group %q with %s", ev.By, ev.Name, strings.Join(ev.Members, ", "))
	case "member_added":
		return fmt.Sprintf("%s added %s", ev.By, ev.User)
	case "member_removed":
		return fmt.Sprintf("%s removed %s", ev.By, ev.User)
	case "member_left":
		if ev.Promoted != "" {
			return fmt.Sprintf("%s left; %s is now admin", ev.User, ev.Promoted)
		}
		return fmt.Sprintf("%s left", ev.User)
	case "role_changed":
		return fmt.Sprintf("%s made %s %s", ev.By, ev.User, ev.Role)
	}
	return "system: " + body
}
