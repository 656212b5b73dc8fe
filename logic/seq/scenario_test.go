package seq

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// The scenario tests replay testdata/*.txt: blocks of one command, a line
// "----" and the output the command must produce, separated by blank lines.
// Lines starting with # are comments. go test -rewrite rewrites the expected
// outputs from what the core does (review the diff before committing).
//
// Commands (key=value arguments; lists are comma-separated):
//
//	config inflight=N keys=N filter=on|off retry=D
//	load chat=ID [members=a,b] [head=N] [epoch=N] [exists=false] [keys=u/d/r,...] [incomplete] [cursors=u/d/N,...] [tail=N:sender,...]
//	     (a key u/r without a device is unscoped: stored before keys were scoped per device)
//	send ref=R chat=ID user=U [device=D] id=K [body=B] [ts=N]
//	system ref=R chat=ID user=U [id=K] body=B
//	resolve ref=R chat=ID user=U [device=D] id=K [found=SEQ] [body=B] [stored=B (the found message's body when not B)]
//	uncreated
//	create chat=ID | abort chat=ID
//	appends [at=D]
//	applied results=ok|invalid|stored:N:conflict|stored:N:unknown,... [unackable=chat,...] [at=D]
//	ack chat=ID user=U device=D seq=N
//	drop chat=ID | dropepoch below=N
//	state chat=ID
//	retry
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata/*.txt")

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

type block struct {
	comments []string
	cmd      string
	want     []string
}

func parseBlocks(t *testing.T, path string) []block {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	var cur *block
	inOut := false
	for n, line := range strings.Split(string(raw), "\n") {
		switch {
		case cur == nil && (line == "" || strings.HasPrefix(line, "#")):
			if strings.HasPrefix(line, "#") {
				blocks = append(blocks, block{comments: []string{line}})
			}
		case cur == nil:
			blocks = append(blocks, block{cmd: line})
			cur = &blocks[len(blocks)-1]
			inOut = false
		case line == "----" && !inOut:
			inOut = true
		case line == "" && inOut:
			cur = nil
		case inOut:
			cur.want = append(cur.want, line)
		default:
			t.Fatalf("%s:%d: expected ---- after the command, got %q", path, n+1, line)
		}
	}
	return blocks
}

func runScenario(t *testing.T, path string) {
	blocks := parseBlocks(t, path)
	s := &scenario{t: t, core: New[string](Config{}, 100), t0: time.Unix(1_700_000_000, 0)}
	var out strings.Builder
	for i, b := range blocks {
		if b.cmd == "" {
			for _, c := range b.comments {
				out.WriteString(c + "\n")
			}
			continue
		}
		got := s.run(b.cmd)
		if !*rewrite && !slices.Equal(got, b.want) {
			t.Errorf("%s, block %d: %s\ngot:\n%s\nwant:\n%s", path, i+1, b.cmd, strings.Join(got, "\n"), strings.Join(b.want, "\n"))
		}
		fmt.Fprintf(&out, "%s\n----\n", b.cmd)
		for _, l := range got {
			out.WriteString(l + "\n")
		}
		out.WriteString("\n")
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type scenario struct {
	t    *testing.T
	core *Core[string]
	t0   time.Time
	now  time.Duration
}

func args(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func list(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func (s *scenario) num(v string) uint64 {
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		s.t.Fatalf("bad number %q", v)
	}
	return n
}

func (s *scenario) dur(v string) time.Duration {
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		s.t.Fatalf("bad duration %q", v)
	}
	return d
}

func (s *scenario) run(cmd string) []string {
	fields := strings.Fields(cmd)
	a := args(fields[1:])
	if at, ok := a["at"]; ok {
		s.now = s.dur(at)
	}
	now := s.t0.Add(s.now)
	switch fields[0] {
	case "config":
		cfg := Config{MaxInflight: int(s.num(a["inflight"])), Keys: int(s.num(a["keys"])), Filter: a["filter"] == "on", RetryMin: s.dur(a["retry"])}
		s.core = New[string](cfg, 100)
		return []string{"ok"}
	case "load":
		l := Load{Meta: record.Chat{ID: a["chat"]}, Exists: a["exists"] != "false", Members: list(a["members"]),
			Head: s.num(a["head"]), Epoch: s.num(a["epoch"]), KeysComplete: true}
		if _, ok := a["incomplete"]; ok {
			l.KeysComplete = false
		}
		for _, k := range list(a["keys"]) {
			u, stored, _ := strings.Cut(k, "/")
			l.Keys = append(l.Keys, record.ParseDedupKey(l.Meta.ID, u, stored))
		}
		for _, c := range list(a["cursors"]) {
			p := strings.Split(c, "/")
			l.Cursors = append(l.Cursors, record.DeviceCursor{User: p[0], Device: p[1], Seq: s.num(p[2])})
		}
		for _, m := range list(a["tail"]) {
			seq, sender, _ := strings.Cut(m, ":")
			l.Tail = append(l.Tail, record.Message{ChatID: l.Meta.ID, Seq: s.num(seq), Sender: sender, Kind: record.MsgText})
		}
		_, fails := s.core.Install(l)
		return failures(fails)
	case "send":
		d := s.core.Send(a["ref"], s.send(a))
		return []string{decision(d)}
	case "system":
		d := s.core.System(a["ref"], record.Message{ChatID: a["chat"], Sender: a["user"], RequestID: a["id"], Kind: record.MsgSystem, Body: a["body"], TS: int64(s.now / time.Millisecond)})
		return []string{decision(d)}
	case "resolve":
		var found *record.Message
		if f := a["found"]; f != "" {
			found = &record.Message{ChatID: a["chat"], Seq: s.num(f), Sender: a["user"], Device: s.send(a).Device, RequestID: a["id"], Kind: record.MsgText, Body: a["body"]}
			if b, ok := a["stored"]; ok {
				found.Body = b
			}
		}
		return []string{decision(s.core.Resolve(a["ref"], s.send(a), found))}
	case "uncreated":
		var ids []string
		for _, ch := range s.core.Uncreated() {
			ids = append(ids, ch.ID)
		}
		return []string{"uncreated " + strings.Join(ids, " ")}
	case "create":
		s.core.Chat(a["chat"]).Exists = true
		return []string{"ok"}
	case "abort":
		return failures(s.core.Abort(s.core.Chat(a["chat"]), ErrNotStored))
	case "appends":
		var out []string
		for _, ap := range s.core.Appends(now) {
			var m []string
			for _, x := range ap.Msgs {
				m = append(m, fmt.Sprintf("%d:%s:%s", x.Seq, x.Sender, x.Body))
			}
			out = append(out, fmt.Sprintf("append %s epoch=%d %s", ap.ChatID(), ap.Epoch, strings.Join(m, " ")))
		}
		if len(out) == 0 {
			out = []string{"no appends"}
		}
		return out
	case "applied":
		var res []record.AppendResult
		for _, r := range list(a["results"]) {
			p := strings.Split(r, ":")
			switch {
			case p[0] == "ok":
				res = append(res, record.AppendResult{Stored: 1 << 30})
			case len(p) == 3 && p[2] == "conflict":
				res = append(res, record.AppendResult{Stored: int(s.num(p[1])), Err: record.ErrConflict})
			case len(p) == 3 && p[2] == "unknown":
				res = append(res, record.AppendResult{Stored: int(s.num(p[1])), Err: errors.New("timeout")})
			case p[0] == "invalid":
				res = append(res, record.AppendResult{Err: record.ErrInvalid})
			default:
				s.t.Fatalf("bad result %q", r)
			}
		}
		// "ok" means every message of the append: fill in the counts.
		apps := slices.Clone(s.core.batch)
		for i := range res {
			if res[i].Stored == 1<<30 && i < len(apps) {
				res[i].Stored = len(apps[i].inflight)
			}
		}
		unackable := list(a["unackable"])
		rep := s.core.Applied(res, func(ch *Chat[string]) bool { return !slices.Contains(unackable, ch.ID) }, now)
		var out []string
		for _, st := range rep.Stored {
			out = append(out, fmt.Sprintf("stored %s %d %s waiters=%s", st.Chat.ID, st.Msg.Seq, st.Msg.Body, strings.Join(st.Waiters, ",")))
		}
		out = append(out, failures(rep.Failed)...)
		if at, ok := s.core.NextRetry(); ok {
			out = append(out, fmt.Sprintf("retry at %s", at.Sub(s.t0)))
		}
		if len(out) == 0 {
			out = []string{"nothing"}
		}
		return out
	case "ack":
		r, err := s.core.Ack(nil, a["chat"], a["user"], a["device"], s.num(a["seq"]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		var senders []string
		for _, m := range r.Covered {
			senders = append(senders, fmt.Sprintf("%d:%s", m.Seq, m.Sender))
		}
		return []string{fmt.Sprintf("covered (%d, %d] complete=%v %s", r.From, r.To, r.Complete, strings.Join(senders, " "))}
	case "drop":
		return failures(s.core.Drop(a["chat"]))
	case "dropepoch":
		below := s.num(a["below"])
		return failures(s.core.DropAll(func(ch *Chat[string]) bool { return ch.Epoch < below }))
	case "state":
		ch := s.core.Chat(a["chat"])
		if ch == nil {
			return []string{"not loaded"}
		}
		var infl []string
		for _, e := range ch.inflight {
			st := "pending"
			if e.doubt {
				st = "doubt"
			}
			infl = append(infl, fmt.Sprintf("%d:%s:%s[%s]", e.msg.Seq, st, e.msg.Body, strings.Join(e.waiters, ",")))
		}
		return []string{fmt.Sprintf("head=%d next=%d exists=%v members=%s keys=%d filter=%v inflight=%s", ch.Head, ch.next, ch.Exists,
			strings.Join(ch.Members, ","), len(ch.keys), ch.filter != nil, strings.Join(infl, " "))}
	case "retry":
		if at, ok := s.core.NextRetry(); ok {
			return []string{fmt.Sprintf("retry at %s", at.Sub(s.t0))}
		}
		return []string{"no retry"}
	}
	s.t.Fatalf("unknown command %q", fields[0])
	return nil
}

func (s *scenario) send(a map[string]string) Send {
	dev := a["device"]
	if dev == "" {
		dev = "d"
	}
	ts := int64(s.num(a["ts"]))
	return Send{Chat: a["chat"], User: a["user"], Device: dev, RequestID: a["id"], Body: a["body"], TS: ts}
}

func decision(d Decision) string {
	switch d.Kind {
	case Rejected:
		return "rejected: " + d.Err.Error()
	case Known:
		return fmt.Sprintf("known seq=%d refan=%v", d.Msg.Seq, d.Refan)
	case Waiting:
		return "waiting"
	case Lookup:
		return "lookup"
	}
	return "?"
}

func failures(fails []Failure[string]) []string {
	var out []string
	for _, f := range fails {
		out = append(out, fmt.Sprintf("failed %s: %v", f.Ref, f.Err))
	}
	if len(out) == 0 {
		return []string{"ok"}
	}
	return out
}
