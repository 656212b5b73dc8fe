package directory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// TestFailOpen runs its own redis-server (on a loopback port in
// 16380-16399), kills it, and checks that every call then fails with
// ErrUnavailable instead of hanging, that a Directory opened while Redis is
// down works, and that both recover by themselves when Redis is back on the
// same port. Skips without the redis-server binary.
func TestFailOpen(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (bash scripts/redis.sh start installs it)")
	}
	port := freePort(t, 16380, 16399)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	srv := startRedis(t, bin, port)

	cfg := testConfig(t, addr)
	cfg.Timeout = 200 * time.Millisecond
	d, err := Open(t.Context(), cfg, testLogger(t))
	mustNil(t, "Open", err)
	t.Cleanup(d.Close)
	ctx := t.Context()
	node := logicNode("logic-a")
	loc := record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}
	mustNil(t, "register", d.Register(ctx, node))
	mustNil(t, "attach", d.Attach(ctx, loc))
	eventually(t, settle, "up", locateIs(d, []string{"alice"}, "alice/phone@logic-a/c#1"))
	if _, err := d.Lookup(ctx, []string{"alice"}); err != nil { // warm the cache
		t.Fatal(err)
	}
	if _, err := d.Nodes(ctx, record.NodeLogic); err != nil {
		t.Fatal(err)
	}

	srv.kill(t)
	// The client learns of the lost connection asynchronously; wait for the
	// first failure, then every call must fail, and fast.
	eventually(t, settle, "first failure", func() error {
		if err := d.Register(ctx, node); err == nil {
			return errors.New("Register still succeeds")
		}
		return nil
	})
	if d.Healthy() {
		t.Error("Healthy = true with Redis down")
	}
	checkAllFail(t, "killed", d, node, loc)

	// A directory opened while Redis is down: Open succeeds, calls fail.
	d2, err := Open(t.Context(), cfg, testLogger(t))
	mustNil(t, "Open while down", err)
	t.Cleanup(d2.Close)
	checkAllFail(t, "opened while down", d2, node, loc)

	startRedis(t, bin, port) // empty: nothing persisted
	for name, dd := range map[string]*Directory{"same directory": d, "opened while down": d2} {
		eventually(t, 10*time.Second, name+": recovers", func() error { return dd.Register(ctx, node) })
		mustNil(t, name+": attach", dd.Attach(ctx, loc))
		eventually(t, settle, name+": locate", locateIs(dd, []string{"alice"}, "alice/phone@logic-a/c#1"))
		if !dd.Healthy() {
			t.Errorf("%s: Healthy = false after recovery", name)
		}
	}
}

// TestSentinel runs a redis-server and a Sentinel monitoring it (the same
// binary with --sentinel), opens the directory through the Sentinel before
// the Sentinel is up (the background connection path cluster and Sentinel
// clients take), and checks it connects and works once it is.
func TestSentinel(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (bash scripts/redis.sh start installs it)")
	}
	port := freePort(t, 16380, 16399)
	startRedis(t, bin, port)
	sport := freePort(t, 16380, 16399)

	cfg := testConfig(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(sport)))
	cfg.SentinelMaster = "parley-test"
	d, err := Open(t.Context(), cfg, testLogger(t))
	mustNil(t, "Open while the Sentinel is down", err)
	t.Cleanup(d.Close)
	ctx := t.Context()
	node := logicNode("logic-a")
	loc := record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}
	checkAllFail(t, "sentinel down", d, node, loc)

	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	mustNil(t, "write sentinel.conf", os.WriteFile(conf, []byte(fmt.Sprintf(
		"bind 127.0.0.1\nport %d\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
		sport, dir, cfg.SentinelMaster, port)), 0o600))
	startRedisArgs(t, bin, sport, dir, conf, "--sentinel")

	eventually(t, 15*time.Second, "connects through the Sentinel", func() error { return d.Register(ctx, node) })
	mustNil(t, "attach", d.Attach(ctx, loc))
	eventually(t, settle, "locate", locateIs(d, []string{"alice"}, "alice/phone@logic-a/c#1"))
	// The data is on the master the Sentinel names.
	c := raw(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	n, err := c.Do(ctx, c.B().Exists().Key(d.locKey("alice")).Build()).AsInt64()
	if err != nil || n != 1 {
		t.Fatalf("EXISTS on the master = %v, %v; want 1", n, err)
	}
	deleteKeys(t, Config{Addrs: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, KeyPrefix: cfg.KeyPrefix})
}

// checkAllFail calls every method and wants an ErrUnavailable error from
// each within a generous bound (Timeout is 200ms; the bound is about
// hanging, not speed).
func checkAllFail(t *testing.T, state string, d *Directory, node record.Node, loc record.DeviceLocation) {
	t.Helper()
	const bound = 2 * time.Second
	now := time.Now()
	calls := []struct {
		name string
		f    func(context.Context) error
	}{
		{"Attach", func(ctx context.Context) error { return d.Attach(ctx, loc) }},
		{"Detach", func(ctx context.Context) error { return d.Detach(ctx, loc) }},
		{"Refresh", func(ctx context.Context) error { return d.Refresh(ctx, []record.DeviceLocation{loc}) }},
		{"Locate", func(ctx context.Context) error { _, err := d.Locate(ctx, []string{"alice"}); return err }},
		{"SetOnline", func(ctx context.Context) error { return d.SetOnline(ctx, "alice", now) }},
		{"SetOffline", func(ctx context.Context) error { return d.SetOffline(ctx, "alice", now) }},
		{"Lookup", func(ctx context.Context) error { _, err := d.Lookup(ctx, []string{"alice"}); return err }},
		{"Register", func(ctx context.Context) error { return d.Register(ctx, node) }},
		{"Deregister", func(ctx context.Context) error { return d.Deregister(ctx, node) }},
		{"Nodes", func(ctx context.Context) error { _, err := d.Nodes(ctx, record.NodeLogic); return err }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.f(context.Background())
		took := time.Since(start)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %s = %v, want an error wrapping ErrUnavailable", state, c.name, err)
		}
		if took > bound {
			t.Errorf("%s: %s took %v, want under %v", state, c.name, took, bound)
		}
		t.Logf("%s: %s failed in %v: %v", state, c.name, took.Round(time.Microsecond), err)
	}
	if d.Healthy() {
		t.Errorf("%s: Healthy = true", state)
	}
}

// freePort returns the first port in lo..hi that nothing listens on.
func freePort(t *testing.T, lo, hi int) int {
	t.Helper()
	for p := lo; p <= hi; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Skipf("no free port in %d..%d", lo, hi)
	return 0
}

type redisProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts a throwaway redis-server on 127.0.0.1:port and waits
// until it answers PING. It is killed at the end of the test.
func startRedis(t *testing.T, bin string, port int) *redisProc {
	t.Helper()
	dir := t.TempDir()
	return startRedisArgs(t, bin, port, dir, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
}

// startRedisArgs starts bin with args (logging to dir) and waits until
// 127.0.0.1:port answers PING.
func startRedisArgs(t *testing.T, bin string, port int, dir string, args ...string) *redisProc {
	t.Helper()
	args = append(args, "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start redis-server: %v", err)
	}
	p := &redisProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill(t) })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	eventually(t, 10*time.Second, "redis-server answers PING", func() error {
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server exited at start:\n%s", log)
		default:
		}
		return ping(addr)
	})
	return p
}

// kill SIGKILLs the server it started (by PID) and reaps it.
func (p *redisProc) kill(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Logf("kill redis-server pid %d: %v", p.cmd.Process.Pid, err)
	}
	<-p.done
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
