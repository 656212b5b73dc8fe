package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/connsrv"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/memlink"
	"github.com/parley-chat/parley/logic"
)

const secret = "e2e-secret-0123456789abcdef0123456789"

// e2eLinkSecret authenticates the tier links of the tiers these tests
// start as separate processes or in one test process.
const e2eLinkSecret = "e2e-link-secret-0123456789abcdef0123456789"

// system is a running standalone Parley on ephemeral loopback ports.
type system struct {
	t        testing.TB
	wsURL    string
	httpURL  string
	store    logic.Store
	authCfg  auth.Config
	stopConn context.CancelFunc
}

func logger() *slog.Logger {
	if os.Getenv("PARLEY_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startSystem(t testing.TB, tune func(*connsrv.Config, *logic.Config)) *system {
	t.Helper()
	log := logger()
	ac := auth.Default()
	ac.Secret = secret
	v, err := auth.NewVerifier(ac, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t).open(t)
	lc := logic.Default()
	lc.LinkListen, lc.HTTPListen, lc.Shards = "127.0.0.1:0", "127.0.0.1:0", 32
	lc.LinkSecret = e2eLinkSecret
	lc.AdminListen = ""
	lc.SendRate = 0 // these tests send in bursts far above 20/s
	cc := connsrv.Default()
	cc.Listen, cc.HTTPListen = "tcp://127.0.0.1:0", ""
	if tune != nil {
		tune(&cc, &lc)
	}
	svc, err := logic.New(lc, st, logic.NewMemPresence(), v, log)
	if err != nil {
		t.Fatal(err)
	}
	if ls, ok := st.(logic.LeaseStore); ok && ls.Slots() > 0 {
		svc.SetLeases(ls)
	}
	if inProcessLink() {
		mem := memlink.NewListener()
		svc.SetLinkListener(mem)
		cc.LinkDial = mem.Dial
	}
	if err := svc.Listen(); err != nil {
		t.Fatal(err)
	}
	lctx, stopLogic := context.WithCancel(context.Background())
	lerr := make(chan error, 1)
	go func() { lerr <- svc.Run(lctx) }()
	<-svc.Ready()
	// Up is not ready: on CQL the node answers unavailable until it holds
	// its sequencing leases, and /readyz says so.
	if err := waitReadyz(http.DefaultClient, "http://"+svc.HTTPAddr()+"/readyz", time.Minute); err != nil {
		t.Fatalf("logic not ready within a minute of coming up: %v", err)
	}

	cc.LogicAddrs = []string{svc.LinkAddr()}
	cc.LinkSecret = e2eLinkSecret
	cs, err := connsrv.New(cc, v, log)
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopConn := context.WithCancel(context.Background())
	cerr := make(chan error, 1)
	go func() { cerr <- cs.Run(cctx) }()
	select {
	case <-cs.Ready():
	case err := <-cerr:
		t.Fatalf("connsrv: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("connsrv not ready within 10s")
	}
	sys := &system{t: t, wsURL: "ws://" + cs.Addr() + "/ws", httpURL: "http://" + svc.HTTPAddr(), store: st, authCfg: ac, stopConn: stopConn}
	t.Cleanup(func() {
		stopConn()
		if err := <-cerr; err != nil {
			t.Errorf("connsrv Run: %v", err)
		}
		stopLogic()
		if err := <-lerr; err != nil {
			t.Errorf("logic Run: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return sys
}

func (s *system) token(user, device string, ttl time.Duration) string {
	s.t.Helper()
	tok, err := auth.Issue(s.authCfg, user, device, ttl, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// dial connects user's device with the SDK.
func (s *system) dial(user, device string) *client.Client {
	s.t.Helper()
	cfg := client.Default()
	cfg.URL, cfg.Token, cfg.Device = s.wsURL, s.token(user, device, time.Hour), device
	cfg.Logger = logger()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.Observe = observeContract
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		s.t.Fatalf("dial %s/%s: %v", user, device, err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recv returns the next text message on c (system messages skipped unless
// wantSystem), failing after 10 s.
func recv(t *testing.T, c *client.Client) client.Message {
	t.Helper()
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("message channel closed: %v", c.Err())
			}
			if m.IsSystem() {
				continue
			}
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no message within 10s")
		}
	}
}

func issueWith(c auth.Config, user string) (string, error) {
	return auth.Issue(c, user, "", time.Hour, time.Now())
}

func startSystemB(b *testing.B) *system { return startSystem(b, nil) }

// inProcessLink reports whether startSystem links its tiers in process
// (internal/memlink, as standalone does) rather than over loopback TCP:
// PARLEY_E2E_LINK=memory or tcp, by default memory with the embedded
// store and tcp with a shared one (scylla), so that CI's two e2e runs cover both transports.
func inProcessLink() bool {
	switch os.Getenv("PARLEY_E2E_LINK") {
	case "memory":
		return true
	case "tcp":
		return false
	}
	return !sharedStore()
}

// waitReadyz polls url until it answers 200 or within passes.
func waitReadyz(hc *http.Client, url string, within time.Duration) error {
	for deadline := time.Now().Add(within); ; {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
