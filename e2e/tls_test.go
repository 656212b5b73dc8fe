package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestTLSThroughHAProxy runs client TLS the way production does: HAProxy
// (scripts/haproxy.sh) terminates TLS 1.3 in front of a standalone node
// whose connsrv reads the PROXY protocol v2 header. It checks that a TLS
// 1.2 client is refused at the handshake, that TLS 1.3 clients upgrade and
// chat, and that a certificate replaced and reloaded is served to new
// connections while an established one keeps chatting.
//
// It runs when haproxy is installed, or with PARLEY_HAPROXY=1 (the script
// then installs Debian's package); it skips otherwise.
func TestTLSThroughHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and HAProxy")
	}
	if os.Getenv("PARLEY_HAPROXY") != "1" && !haproxyInstalled() {
		t.Skip("haproxy is not installed; PARLEY_HAPROXY=1 installs it (scripts/haproxy.sh)")
	}
	bin := parleyBinary(t)
	ports := [4]int{freePort(t), freePort(t), freePort(t), freePort(t)}
	// Each WebSocket below comes from its own 127.0.0.x source address, and
	// connsrv allows two connections per client IP (per 100s): if it
	// counted HAProxy's address instead of the PROXY header's, the third
	// connection of the test would be refused.
	p := startStandalone(t, bin, newTestStore(t), ports,
		"-set", "connsrv.proxy_protocol=true", "-set", "connsrv.trusted_proxies=127.0.0.1/32",
		"-set", "connsrv.ip_conn_rate=0.01", "-set", "connsrv.ip_conn_burst=2", "-set", "connsrv.ip_rate_exempt=")

	ca := newE2ECA(t)
	h := startHAProxy(t, ca, fmt.Sprintf("127.0.0.1:%d", ports[0]))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	t.Run("tls1.2 refused", func(t *testing.T) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
			Config: &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12}}
		c, err := d.Dial("tcp", h.addr)
		if err == nil {
			c.Close()
			t.Fatal("a TLS 1.2-only client completed the handshake, want it refused")
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("got %v, want a protocol version alert", err)
		}
	})

	alice := dialWSSFrom(t, h.url, roots, p.token(t, "alice"), "a", net.IPv4(127, 0, 0, 2))
	bob := dialWSSFrom(t, h.url, roots, p.token(t, "bob"), "b", net.IPv4(127, 0, 0, 3))
	if v := alice.tls().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated version %x, want TLS 1.3", v)
	}
	if got := alice.tls().NegotiatedProtocol; got != "http/1.1" {
		t.Errorf("ALPN %q, want http/1.1", got)
	}
	if cn := alice.tls().PeerCertificates[0].Subject.CommonName; cn != "v1" {
		t.Fatalf("served certificate %s, want v1", cn)
	}
	alice.chat(t, bob, "bob", "hello over TLS")

	// The client address connsrv sees is the TLS client's, from the PROXY
	// header: the per-IP limit (burst 2) refuses the third connection from
	// 127.0.0.7 with 429 and still admits one from 127.0.0.8. (Neither the
	// logic HTTP API nor a log line at Info shows a session's address.)
	t.Run("client address", func(t *testing.T) {
		carol := p.token(t, "carol")
		from7 := net.IPv4(127, 0, 0, 7)
		for i := range 2 {
			c := dialWSSFrom(t, h.url, roots, carol, fmt.Sprintf("c%d", i), from7)
			c.chat(t, bob, "bob", fmt.Sprintf("from 127.0.0.7 #%d", i))
		}
		if _, err := tryWSS(h.url, roots, carol, "c2", from7); err == nil {
			t.Fatal("third connection from 127.0.0.7 upgraded, want 429 from the per-IP limit")
		} else if se, ok := err.(ws.StatusError); !ok || int(se) != http.StatusTooManyRequests {
			t.Fatalf("third connection from 127.0.0.7: got %v, want HTTP 429", err)
		}
		c := dialWSSFrom(t, h.url, roots, carol, "c3", net.IPv4(127, 0, 0, 8))
		c.chat(t, bob, "bob", "from 127.0.0.8")
	})

	// A new certificate: written over the old PEM, then reload.
	ca.writeLeaf(t, h.cert, "v2")
	h.run(t, "reload")
	deadline := time.Now().Add(15 * time.Second)
	for {
		cn, err := servedCN(h.addr, roots)
		if err == nil && cn == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reload new connections get %q (err %v), want v2", cn, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	bob2 := dialWSSFrom(t, h.url, roots, p.token(t, "bob"), "b2", net.IPv4(127, 0, 0, 4))
	if cn := bob2.tls().PeerCertificates[0].Subject.CommonName; cn != "v2" {
		t.Errorf("new connection got %s, want v2", cn)
	}
	// The connections opened before the reload still chat both ways.
	alice.chat(t, bob, "bob", "still here after the reload")
	bob.chat(t, alice, "alice", "and back")
	if cn := alice.tls().PeerCertificates[0].Subject.CommonName; cn != "v1" {
		t.Errorf("established connection now shows %s, want v1", cn)
	}
	bob2.chat(t, alice, "alice", "from the new certificate")
}

func haproxyInstalled() bool {
	if _, err := exec.LookPath("haproxy"); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/haproxy")
	return err == nil
}

// haproxyRun is one scripts/haproxy.sh instance with a private run dir.
type haproxyRun struct {
	env  []string
	addr string // 127.0.0.1:port
	url  string // wss://localhost:port/ws
	cert string // the PEM it serves
}

func startHAProxy(t *testing.T, ca *e2eCA, backend string) *haproxyRun {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	h := &haproxyRun{
		addr: fmt.Sprintf("127.0.0.1:%d", port),
		url:  fmt.Sprintf("wss://localhost:%d/ws", port),
		cert: filepath.Join(dir, "server.pem"),
	}
	ca.writeLeaf(t, h.cert, "v1")
	h.env = append(childEnv(),
		"PARLEY_HAPROXY_DIR="+filepath.Join(dir, "run"),
		fmt.Sprintf("PARLEY_HAPROXY_PORT=%d", port),
		"PARLEY_HAPROXY_BACKEND="+backend,
		"PARLEY_HAPROXY_CERT="+h.cert,
		"PARLEY_HAPROXY_MAXCONN=1000")
	h.run(t, "start")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := h.cmd("logs").CombinedOutput()
			t.Logf("haproxy log:\n%s", out)
		}
		if out, err := h.cmd("stop").CombinedOutput(); err != nil {
			t.Errorf("haproxy.sh stop: %v\n%s", err, out)
		}
	})
	return h
}

func (h *haproxyRun) cmd(command string) *exec.Cmd {
	c := exec.Command("bash", "../scripts/haproxy.sh", command)
	c.Env = h.env
	return c
}

func (h *haproxyRun) run(t *testing.T, command string) {
	t.Helper()
	out, err := h.cmd(command).CombinedOutput()
	if testing.Verbose() {
		t.Logf("haproxy.sh %s:\n%s", command, out)
	}
	if err != nil {
		t.Fatalf("haproxy.sh %s: %v\n%s", command, err, out)
	}
}

// servedCN opens a TLS connection and returns the leaf's common name.
func servedCN(addr string, roots *x509.CertPool) (string, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// wssConn is a bare WebSocket client over TLS with the test's CA. The SDK
// (package client) dials wss:// with the system roots and takes no
// tls.Config, so this test speaks the JSON protocol itself.
type wssConn struct {
	nc     net.Conn
	user   string
	device string
	seq    int // request ids: user-device-seq, unique per device
}

// dialWSSFrom connects from the local address (nil: any), reads hello and
// syncs.
func dialWSSFrom(t *testing.T, url string, roots *x509.CertPool, token, device string, local net.IP) *wssConn {
	t.Helper()
	nc, err := tryWSS(url, roots, token, device, local)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	c := &wssConn{nc: nc, device: device}
	t.Cleanup(c.close)
	hello := c.next(t, "hello")
	c.user, _ = hello["user"].(string)
	c.send(t, map[string]any{"type": "sync", "id": "s0"})
	c.next(t, "synced")
	return c
}

// tryWSS opens a TLS WebSocket; an upgrade refusal is a ws.StatusError.
func tryWSS(url string, roots *x509.CertPool, token, device string, local net.IP) (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: local}
	}
	d := ws.Dialer{
		Timeout:   10 * time.Second,
		Header:    ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}),
		TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}},
		NetDial:   nd.DialContext,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, url+"?device="+device)
	if err != nil {
		return nil, err
	}
	if br != nil {
		// The hello frame may already sit in the handshake's buffer; this
		// test reads frames straight from the conn, so put it back.
		nc = &prefixConn{Conn: nc, pending: br}
	}
	return nc, nil
}

// prefixConn reads the handshake reader's buffered bytes before the conn.
type prefixConn struct {
	net.Conn
	pending interface {
		Buffered() int
		Read([]byte) (int, error)
	}
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.pending != nil && c.pending.Buffered() > 0 {
		return c.pending.Read(p)
	}
	return c.Conn.Read(p)
}

func (c *wssConn) tls() tls.ConnectionState {
	nc := c.nc
	if pc, ok := nc.(*prefixConn); ok {
		nc = pc.Conn
	}
	return nc.(*tls.Conn).ConnectionState()
}

func (c *wssConn) close() { _ = c.nc.Close() }

func (c *wssConn) send(t *testing.T, frame map[string]any) {
	t.Helper()
	b, err := json.Marshal(frame)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := wsutil.WriteClientText(c.nc, b); err != nil {
		t.Fatalf("%s: write %s: %v", c.user, b, err)
	}
}

// next returns the next frame of type typ, acking messages and skipping
// other frames on the way.
func (c *wssConn) next(t *testing.T, typ string) map[string]any {
	t.Helper()
	return c.until(t, func(f map[string]any) bool { return f["type"] == typ })
}

func (c *wssConn) until(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_ = c.nc.SetReadDeadline(deadline)
		b, err := wsutil.ReadServerText(c.nc)
		if err != nil {
			t.Fatalf("%s: read: %v", c.user, err)
		}
		if os.Getenv("PARLEY_E2E_LOG") != "" {
			t.Logf("%s/%s <- %s", c.user, c.device, b)
		}
		var f map[string]any
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: bad frame %s: %v", c.user, b, err)
		}
		if f["type"] == "msg" {
			c.send(t, map[string]any{"type": "ack", "chat": f["chat"], "seq": f["seq"]})
		}
		if f["type"] == "error" {
			t.Fatalf("%s: error frame %s", c.user, b)
		}
		if match(f) {
			return f
		}
	}
}

// chat sends body from c to user (whose connection is to) and checks that
// c gets sent and to gets the message.
func (c *wssConn) chat(t *testing.T, to *wssConn, user, body string) {
	t.Helper()
	c.seq++
	id := fmt.Sprintf("%s-%s-%d", c.user, c.device, c.seq)
	c.send(t, map[string]any{"type": "send", "id": id, "to": user, "body": body})
	sent := c.until(t, func(f map[string]any) bool { return f["type"] == "sent" && f["id"] == id })
	if sent["seq"] == nil {
		t.Fatalf("sent without seq: %v", sent)
	}
	to.until(t, func(f map[string]any) bool { return f["type"] == "msg" && f["body"] == body })
}

// e2eCA is a test CA (ECDSA P-256) that writes HAProxy-style PEMs: the
// leaf certificate followed by its key.
type e2eCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newE2ECA(t *testing.T) *e2eCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &e2eCA{cert: cert, key: key}
}

// writeLeaf writes a certificate for localhost and 127.0.0.1 named cn and
// its key to path, replacing the file atomically.
func (ca *e2eCA) writeLeaf(t *testing.T, path, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
	if err := os.WriteFile(path+".tmp", out, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
