package tlsconf

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"off", Default(), nil},
		{"zero", Config{}, nil},
		{"server", Config{CertFile: "c", KeyFile: "k"}, nil},
		{"mtls server", Config{CertFile: "c", KeyFile: "k", ClientCAFile: "ca"}, nil},
		{"client", Config{CAFile: "ca", ServerName: "logic"}, nil},
		{"cert without key", Config{CertFile: "c"}, []string{"x.key_file: required"}},
		{"key without cert", Config{KeyFile: "k"}, []string{"x.cert_file: required"}},
		{"client ca without cert", Config{ClientCAFile: "ca"}, []string{"x.client_ca_file: needs cert_file"}},
		{"negative interval", Config{ReloadInterval: -1}, []string{"x.reload_interval"}},
		{"tiny interval", Config{ReloadInterval: time.Millisecond}, []string{"x.reload_interval"}},
		{"all at once", Config{CertFile: "c", ReloadInterval: -1}, []string{"x.key_file", "x.reload_interval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.ValidateAs("x")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	if Default().ServerEnabled() || Default().ClientEnabled() {
		t.Fatal("default config has TLS on, want off")
	}
	if !(Config{CertFile: "c"}).ServerEnabled() {
		t.Error("cert_file set: ServerEnabled false, want true")
	}
	if !(Config{ServerName: "n"}).ClientEnabled() || !(Config{CAFile: "ca"}).ClientEnabled() {
		t.Error("server_name or ca_file set: ClientEnabled false, want true")
	}
}

// echoServer serves TLS on loopback with conf, echoing lines.
func echoServer(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, conf)
	t.Cleanup(func() { _ = tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func rootPool(ca *testCA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// dial connects with conf and returns the connection after the handshake.
func dial(addr string, conf *tls.Config) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: conf}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// servedCN dials and returns the common name of the server's leaf.
func servedCN(t *testing.T, addr string, ca *testCA) string {
	t.Helper()
	c, err := dial(addr, &tls.Config{RootCAs: rootPool(ca), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// echo writes a line and reads it back.
func echo(c net.Conn, line string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("got %q, want %q", got, line)
	}
	return nil
}

func startServer(t *testing.T, f files, interval time.Duration) string {
	t.Helper()
	conf, stop, err := ServerConfig(Config{CertFile: f.cert, KeyFile: f.key, ReloadInterval: interval}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return echoServer(t, conf)
}

func TestVersions(t *testing.T) {
	ca := newTestCA(t)
	addr := startServer(t, writeFiles(t, ca, "v1"), time.Hour)
	for _, tc := range []struct {
		name   string
		max    uint16
		wantOK bool
	}{
		{"tls1.2", tls.VersionTLS12, false},
		{"tls1.3", tls.VersionTLS13, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(addr, &tls.Config{RootCAs: rootPool(ca), ServerName: "localhost", MaxVersion: tc.max})
			if !tc.wantOK {
				if err == nil {
					c.Close()
					t.Fatalf("a TLS 1.2-only client connected, want a handshake failure")
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("got %v, want a protocol version alert", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want a connection", err)
			}
			defer c.Close()
			if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
				t.Errorf("got version %x, want TLS 1.3", v)
			}
			if err := echo(c, "hello"); err != nil {
				t.Error(err)
			}
		})
	}
}

func counter(cert, result string) uint64 {
	return metrics.GetOrCreateCounter(fmt.Sprintf(`parley_tls_cert_reloads_total{cert=%q,result=%q}`, cert, result)).Get()
}

// waitFor polls cond every 10ms until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReload(t *testing.T) {
	ca := newTestCA(t)
	f := writeFiles(t, ca, "v1")
	addr := startServer(t, f, 20*time.Millisecond)
	if got := servedCN(t, addr, ca); got != "v1" {
		t.Fatalf("got %s, want v1", got)
	}
	gauge := metrics.GetOrCreateGauge(fmt.Sprintf(`parley_tls_cert_expiry_seconds{cert=%q}`, f.cert), nil)
	if got := gauge.Get(); got < float64(time.Now().Unix()) {
		t.Errorf("expiry gauge %v, want a time in the future", got)
	}
	old, err := dial(addr, &tls.Config{RootCAs: rootPool(ca), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// A new pair: cert first, key second, as a deploy tool would write
	// them; the half-written state must not replace the good pair.
	c2, k2 := ca.leaf(t, "v2", x509.ExtKeyUsageServerAuth)
	writeAtomic(t, f.cert, c2)
	time.Sleep(50 * time.Millisecond)
	writeAtomic(t, f.key, k2)
	waitFor(t, "v2 served", func() bool { return servedCN(t, addr, ca) == "v2" })
	if got := counter(f.cert, "ok"); got != 1 {
		t.Errorf("reloads ok = %d, want 1", got)
	}
	if err := echo(old, "still here"); err != nil {
		t.Errorf("established connection after the reload: %v", err)
	}
	if cn := old.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "v1" {
		t.Errorf("established connection has %s, want v1", cn)
	}

	// A broken pair keeps v2 and is counted once.
	errsBefore := counter(f.cert, "error")
	writeAtomic(t, f.cert, []byte("not a certificate"))
	waitFor(t, "the broken pair counted", func() bool { return counter(f.cert, "error") > errsBefore })
	time.Sleep(100 * time.Millisecond) // several more checks: still one error
	if got := counter(f.cert, "error") - errsBefore; got != 1 {
		t.Errorf("errors counted for one broken pair = %d, want 1", got)
	}
	if got := servedCN(t, addr, ca); got != "v2" {
		t.Errorf("after a broken pair got %s, want v2 still served", got)
	}
	// A mismatched pair (v3's cert, v2's key) too.
	c3, _ := ca.leaf(t, "v3", x509.ExtKeyUsageServerAuth)
	writeAtomic(t, f.cert, c3)
	waitFor(t, "the mismatched pair counted", func() bool { return counter(f.cert, "error") > errsBefore+1 })
	if got := servedCN(t, addr, ca); got != "v2" {
		t.Errorf("after a mismatched pair got %s, want v2 still served", got)
	}
	// Removing the files keeps v2 too.
	if err := os.Remove(f.key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing key counted", func() bool { return counter(f.cert, "error") > errsBefore+2 })
	if got := servedCN(t, addr, ca); got != "v2" {
		t.Errorf("after removing the key got %s, want v2 still served", got)
	}
	if err := echo(old, "and still"); err != nil {
		t.Errorf("established connection after the failed reloads: %v", err)
	}
}

func TestServerConfigErrors(t *testing.T) {
	ca := newTestCA(t)
	f := writeFiles(t, ca, "v1")
	junk := filepath.Join(f.dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"off", Config{}, "cert_file is empty"},
		{"missing cert", Config{CertFile: f.cert + ".nope", KeyFile: f.key}, "cannot stat certificate"},
		{"bad pair", Config{CertFile: junk, KeyFile: f.key}, "cannot load certificate"},
		{"bad client ca", Config{CertFile: f.cert, KeyFile: f.key, ClientCAFile: junk}, "client_ca_file"},
		{"invalid", Config{CertFile: f.cert}, "tls.key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stop, err := ServerConfig(tc.cfg, nil)
			if err == nil {
				stop()
				t.Fatalf("got nil, want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ClientConfig(Config{CAFile: junk}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("client with a junk ca_file: got %v, want a ca_file error", err)
	}
}

func TestClientConfig(t *testing.T) {
	ca := newTestCA(t)
	f := writeFiles(t, ca, "server")
	// Mutual TLS: the server asks for client certificates signed by ca.
	sconf, stop, err := ServerConfig(Config{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca, ReloadInterval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	addr := echoServer(t, sconf)

	cc, ck := ca.leaf(t, "connsrv-1", x509.ExtKeyUsageClientAuth)
	ccFile, ckFile := filepath.Join(f.dir, "client.pem"), filepath.Join(f.dir, "client-key.pem")
	writeAtomic(t, ccFile, cc)
	writeAtomic(t, ckFile, ck)

	for _, tc := range []struct {
		name string
		cfg  Config
		want string // error substring; empty: echo works
	}{
		{"mutual", Config{CAFile: f.ca, ServerName: "localhost", CertFile: ccFile, KeyFile: ckFile}, ""},
		{"ip name", Config{CAFile: f.ca, ServerName: "127.0.0.1", CertFile: ccFile, KeyFile: ckFile}, ""},
		{"no client cert", Config{CAFile: f.ca, ServerName: "localhost"}, "certificate required"},
		{"wrong name", Config{CAFile: f.ca, ServerName: "logic.example", CertFile: ccFile, KeyFile: ckFile}, "logic.example"},
		{"system roots", Config{ServerName: "localhost", CertFile: ccFile, KeyFile: ckFile}, "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := ClientConfig(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if conf.MinVersion != tls.VersionTLS13 {
				t.Errorf("MinVersion %x, want TLS 1.3", conf.MinVersion)
			}
			c, err := dial(addr, conf)
			if err == nil {
				// In TLS 1.3 the server checks the client certificate
				// after the client's handshake is done: the verdict
				// arrives with the first read.
				err = echo(c, "ping")
				c.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want a working connection", err)
			case tc.want != "" && err == nil:
				t.Fatalf("got a working connection, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				var verr *tls.CertificateVerificationError
				if !errors.As(err, &verr) || tc.want != "unknown authority" {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
			}
		})
	}
}
