package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
)

// TestStandaloneTLSLinkAndHTTP: the HTTP API and the tier link between the
// connection and logic tiers run over TLS 1.3 (Go crypto/tls via
// internal/tlsconf); TLS 1.2 and plaintext clients are refused, and chat
// works through the encrypted link.
func TestStandaloneTLSLinkAndHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ca := newE2ECA(t)
	dir := t.TempDir()
	srv, caFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "ca.pem")
	ca.writeLeaf(t, srv, "parley-logic")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	// connsrv checks the logic node's certificate against a deny list,
	// empty for now (revoked at the end).
	deny := filepath.Join(dir, "deny.txt")
	if err := os.WriteFile(deny, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := parleyBinary(t)
	ports := [4]int{freePort(t), freePort(t), freePort(t), freePort(t)}
	p := startStandalone(t, bin, newTestStore(t), ports,
		"-set", "logic.link_tls.cert_file="+srv, "-set", "logic.link_tls.key_file="+srv,
		"-set", "connsrv.link_tls.ca_file="+caFile,
		"-set", "connsrv.link_tls.deny_file="+deny, "-set", "connsrv.link_tls.reload_interval=100ms",
		"-set", "connsrv.link_ping_interval=200ms",
		"-set", "logic.http_tls.cert_file="+srv, "-set", "logic.http_tls.key_file="+srv)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	api := fmt.Sprintf("https://127.0.0.1:%d", ports[3])
	httpsClient := func(maxVersion uint16) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MaxVersion: maxVersion}}}
	}

	// The HTTP API: TLS 1.3 answers, TLS 1.2 and plaintext do not.
	token := func(user string) string {
		t.Helper()
		resp, err := httpsClient(0).Post(api+"/v1/dev/token?user="+user+"&device=d", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("got TLS state %+v, want TLS 1.3", resp.TLS)
		}
		var out struct{ Token string }
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
			t.Fatalf("dev token: %s", b)
		}
		return out.Token
	}
	if _, err := httpsClient(tls.VersionTLS12).Get(api + "/healthz"); err == nil {
		t.Fatal("a TLS 1.2 client reached the HTTP API")
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(p.httpBase + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Fatal("a plaintext client reached the HTTP API")
	}
	// The tier link refuses TLS 1.2 too.
	if c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[2]), &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 client completed a handshake on the tier link")
	}

	// Chat through connsrv -> TLS link -> logic.
	dial := func(user string) *client.Client {
		cfg := client.Default()
		cfg.URL, cfg.Token, cfg.Device, cfg.Logger = p.wsURL, token(user), "d", logger()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cfg.Observe = observeContract
		c, err := client.Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent, err := alice.SendTo(ctx, "bob", "over TLS")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-bob.Messages():
		if m.Body != "over TLS" || m.Seq != sent.Seq {
			t.Fatalf("bob got %+v, want %q seq %d", m, "over TLS", sent.Seq)
		}
	case <-ctx.Done():
		t.Fatal("bob got nothing")
	}

	// Revoking the logic node's certificate cuts the established link
	// (before, it lived on until a restart): connsrv stops being ready and
	// its clients are closed.
	raw, err := os.ReadFile(srv)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(deny+".new", []byte(fmt.Sprintf("%x\n", leaf.SerialNumber)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(deny+".new", deny); err != nil {
		t.Fatal(err)
	}
	for cut := time.After(30 * time.Second); ; {
		select {
		case st := <-bob.States():
			if st.Kind != client.StateReconnecting {
				continue
			}
		case <-cut:
			t.Fatal("bob's connection outlived the revocation of the logic node's certificate by 30 s")
		}
		break
	}
	start := time.Now()
	for {
		resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("connsrv still ready 30 s after the logic node's certificate was revoked")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
