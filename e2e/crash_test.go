package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
)

// buildParley builds the parley binary once per test run.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func parleyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "parley-e2e-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "parley")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, "../cmd/parley").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// childEnv is the environment for the parley processes the tests start:
// this one without PARLEY_* variables. The test scripts export service
// addresses such as PARLEY_KAFKA_BROKERS for the tests themselves, and the
// binary would read those as configuration (kafka.brokers); every setting
// a process needs is passed with -set instead.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort returns a loopback port that is free now, for a child process
// to listen on. It picks below the kernel's ephemeral range (32768 and up
// here): a port the kernel handed out for :0 may be handed out again as
// the source port of any outgoing connection before the child binds it
// (CI once failed with "address already in use" that way).
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := 20000 + int(portSeq.Add(1)%12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatal("cannot find a free port in 20000-31999")
	return 0
}

// portSeq walks 20000-31999 from a random start, so parallel test
// processes rarely try the same ports.
var portSeq = func() *atomic.Uint32 {
	var v atomic.Uint32
	v.Store(uint32(rand.IntN(12000)))
	return &v
}()

// proc is a running `parley standalone`.
type proc struct {
	cmd       *exec.Cmd
	wsURL     string
	httpBase  string
	adminBase string // logic's admin listener: /metrics
}

func startStandalone(t *testing.T, bin string, ts testStore, ports [4]int, extra ...string) *proc {
	t.Helper()
	adminPort := freePort(t)
	cmd := exec.Command(bin, "standalone", "-config", "../configs/standalone.yaml",
		"-set", fmt.Sprintf("logic.admin_listen=127.0.0.1:%d", adminPort),
		"-set", fmt.Sprintf("connsrv.listen=127.0.0.1:%d", ports[0]),
		"-set", fmt.Sprintf("connsrv.http_listen=127.0.0.1:%d", ports[1]),
		"-set", fmt.Sprintf("logic.link_listen=127.0.0.1:%d", ports[2]),
		"-set", fmt.Sprintf("logic.http_listen=127.0.0.1:%d", ports[3]),
		"-set", "logic.send_rate=0")
	cmd.Args = append(append(cmd.Args, ts.flags()...), extra...)
	cmd.Env = childEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	up := make(chan struct{})
	exited := make(chan struct{})
	var tailMu sync.Mutex
	var tail []string // the last lines it printed, for a failure message
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if testing.Verbose() {
				t.Log(line)
			}
			tailMu.Lock()
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
			tailMu.Unlock()
			if strings.Contains(line, "parley standalone up") {
				once.Do(func() { close(up) })
			}
		}
	}()
	lastLines := func() string {
		tailMu.Lock()
		defer tailMu.Unlock()
		return strings.Join(tail, "\n")
	}
	within := ts.startTimeout()
	select {
	case <-up:
	case <-exited:
		t.Fatalf("standalone exited before it came up; its last lines:\n%s", lastLines())
	case <-time.After(within):
		t.Fatalf("standalone did not come up within %v; its last lines:\n%s", within, lastLines())
	}
	// Up is not ready: on CQL the node answers unavailable until it holds
	// its sequencing leases, and /readyz says so.
	readyz, hc := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[3]), &http.Client{Timeout: 5 * time.Second}
	for _, a := range extra {
		if strings.HasPrefix(a, "logic.http_tls.cert_file=") {
			// Readiness only; the test checks the certificate itself.
			readyz = fmt.Sprintf("https://127.0.0.1:%d/readyz", ports[3])
			hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}} //nolint:gosec // readiness probe of a test server
		}
	}
	if err := waitReadyz(hc, readyz, within); err != nil {
		t.Fatalf("standalone not ready within %v of coming up (%v); its last lines:\n%s", within, err, lastLines())
	}
	return &proc{cmd: cmd, wsURL: fmt.Sprintf("ws://127.0.0.1:%d/ws", ports[0]), httpBase: fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		adminBase: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
}

// token mints a development token for user, bound to device when one is
// given (without: no dev claim, so a test may dial as several devices).
func (p *proc) token(t *testing.T, user string, device ...string) string {
	t.Helper()
	q := "?user=" + url.QueryEscape(user)
	if len(device) > 0 {
		q += "&device=" + url.QueryEscape(device[0])
	}
	resp, err := http.Post(p.httpBase+"/v1/dev/token"+q, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		t.Fatalf("dev token: %s", body)
	}
	return out.Token
}

func (p *proc) dial(t *testing.T, user string) *client.Client {
	t.Helper()
	cfg := client.Default()
	cfg.URL, cfg.Token, cfg.Device = p.wsURL, p.token(t, user), "d"
	cfg.Logger = logger()
	cfg.RequestTimeout = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.Observe = observeContract
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// The SDK stops reading the socket while the app does not take its
	// messages; these tests look at history, so drain them.
	go func() {
		for range c.Messages() {
		}
	}()
	return c
}

// TestCrashKeepsHistory SIGKILLs the real standalone binary while clients
// send, restarts it on the same data directory, and checks that every
// acknowledged message survived, that no seq is missing or duplicated and
// that seqs continue after the last stored one.
func TestCrashKeepsHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := parleyBinary(t)
	data := newTestStore(t)
	ports := [4]int{freePort(t), freePort(t), freePort(t), freePort(t)}
	p := startStandalone(t, bin, data, ports)

	alice := p.dial(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	group, err := alice.CreateGroup(ctx, "crash", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	// Senders run until the kill; every acked message is recorded.
	type ack struct {
		chat string
		seq  uint64
		body string
	}
	var mu sync.Mutex
	var acked []ack
	sendCtx, stopSend := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w, dest := range []string{"bob", group} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.dial(t, []string{"alice", "carol"}[w])
			for i := 0; sendCtx.Err() == nil; i++ {
				body := fmt.Sprintf("w%d-%d", w, i)
				var s client.Sent
				var err error
				if strings.Contains(dest, ":") {
					s, err = c.Send(sendCtx, dest, body)
				} else {
					s, err = c.SendTo(sendCtx, dest, body)
				}
				if err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, ack{s.Chat, s.Seq, body})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	stopSend()
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n < 10 {
		t.Fatalf("only %d messages acked before the kill; the test needs more", n)
	}

	p2 := startStandalone(t, bin, data, ports)
	reader := p2.dial(t, "alice")
	for _, chat := range []string{"dm:alice:bob", group} {
		var all []client.Message // pages backwards from the newest
		before := uint64(0)
		for {
			page, more, err := reader.History(ctx, chat, client.HistoryQuery{Before: before, Limit: 200})
			if err != nil {
				t.Fatal(err)
			}
			all = append(page, all...)
			if len(page) == 0 || !more {
				break
			}
			before = page[0].Seq
		}
		for i, m := range all {
			if m.Seq != uint64(i+1) {
				t.Fatalf("chat %s: position %d holds seq %d (gap or duplicate)", chat, i, m.Seq)
			}
		}
		bySeq := map[uint64]string{}
		for _, m := range all {
			bySeq[m.Seq] = m.Body
		}
		for _, a := range acked {
			if a.chat == chat && bySeq[a.seq] != a.body {
				t.Fatalf("acked %s #%d %q lost after the crash (store has %q)", chat, a.seq, a.body, bySeq[a.seq])
			}
		}
		s, err := reader.Send(ctx, chat, "after restart")
		if err != nil {
			t.Fatal(err)
		}
		if s.Seq != uint64(len(all)+1) {
			t.Fatalf("chat %s: seq after restart %d, want %d", chat, s.Seq, len(all)+1)
		}
	}
	t.Logf("%d acked messages survived SIGKILL", n)
}

// TestCrashKeepsPositions: a device's acknowledged position and a user's
// read marker survive SIGKILL once the marks interval (logic.marks_interval,
// 1 s) has passed: after the restart the device, reconnecting without
// positions, is not sent what it acknowledged, and read_seq is kept. (Until
// acks and reads went through the marks writer, an idle node held them only
// in memory and a crash re-sent everything.)
func TestCrashKeepsPositions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := parleyBinary(t)
	data := newTestStore(t)
	ports := [4]int{freePort(t), freePort(t), freePort(t), freePort(t)}
	p := startStandalone(t, bin, data, ports)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dialBob := func(p *proc) *client.Client {
		cfg := client.Default()
		cfg.URL, cfg.Token, cfg.Device = p.wsURL, p.token(t, "bob"), "b1"
		cfg.Logger = logger()
		cfg.RequestTimeout = 3 * time.Second
		cfg.Observe = observeContract
		c, err := client.Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	alice := p.dial(t, "alice")
	const chat, n = "dm:alice:bob", 5
	for i := range n {
		if _, err := alice.SendTo(ctx, "bob", fmt.Sprintf("m%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	bob := dialBob(p)
	for i := range n {
		select {
		case m := <-bob.Messages():
			if m.Seq != uint64(i+1) {
				t.Fatalf("bob got seq %d, want %d", m.Seq, i+1)
			}
		case <-ctx.Done():
			t.Fatal("bob did not get the messages")
		}
	}
	if err := bob.MarkRead(ctx, chat, 2); err != nil {
		t.Fatal(err)
	}
	// The SDK acks what the app took; the marks writer makes it durable
	// within logic.marks_interval. Wait past both.
	time.Sleep(3 * time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	_ = bob.Close()

	p2 := startStandalone(t, bin, data, ports)
	bob = dialBob(p2) // a fresh client: no positions in its sync
	if err := bob.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-bob.Messages():
		t.Fatalf("after the restart bob was sent %s #%d again, which it had acknowledged", m.Chat, m.Seq)
	case <-time.After(time.Second):
	}
	chats, err := bob.Chats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chats {
		if c.Chat == chat && (c.ReadSeq != 2 || c.Unread != n-2) {
			t.Fatalf("after the restart bob's %s has read_seq %d, unread %d; want 2, %d", chat, c.ReadSeq, c.Unread, n-2)
		}
	}
	if len(chats) == 0 {
		t.Fatal("bob has no chats after the restart")
	}
}
