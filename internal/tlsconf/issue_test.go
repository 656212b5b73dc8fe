package tlsconf

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fleetPKI is a CA made by NewCA with node certificates made by Issue,
// written to files the way `parley certs` writes them.
type fleetPKI struct {
	dir           string
	caCert, caKey []byte
	serials       map[string]string // node -> serial
}

func newFleetPKI(t *testing.T) *fleetPKI {
	t.Helper()
	cert, key, err := NewCA("parley test fleet", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &fleetPKI{dir: t.TempDir(), caCert: cert, caKey: key, serials: map[string]string{}}
	writeAtomic(t, filepath.Join(p.dir, "ca.crt"), cert)
	return p
}

func (p *fleetPKI) issue(t *testing.T, node string) {
	t.Helper()
	cert, key, serial, err := Issue(p.caCert, p.caKey, node, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(p.dir, node+".crt"), cert)
	writeAtomic(t, filepath.Join(p.dir, node+".key"), key)
	p.serials[node] = serial
}

func (p *fleetPKI) path(name string) string { return filepath.Join(p.dir, name) }

// TestIssuedCertsMutualTLS: a CA and node certificates from NewCA and Issue
// carry a mutual TLS 1.3 link both ways; a certificate of another CA is
// refused, and so is a node whose serial is added to the deny file, after
// the reload interval, on either side.
func TestIssuedCertsMutualTLS(t *testing.T) {
	p := newFleetPKI(t)
	p.issue(t, "logic-1")
	p.issue(t, "connsrv-1")
	deny := p.path("deny.txt")
	writeAtomic(t, deny, []byte("# revoked link certificates\n"))
	const interval = 20 * time.Millisecond
	srv, stop, err := ServerConfig(Config{CertFile: p.path("logic-1.crt"), KeyFile: p.path("logic-1.key"),
		ClientCAFile: p.path("ca.crt"), DenyFile: deny, ReloadInterval: interval}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	addr := echoServer(t, srv)
	client := func(node string) Config {
		return Config{CAFile: p.path("ca.crt"), CertFile: p.path(node + ".crt"), KeyFile: p.path(node + ".key"),
			ServerName: "localhost", DenyFile: deny, ReloadInterval: interval}
	}
	roundTrip := func(cfg Config) error {
		conf, err := ClientConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c, err := dial(addr, conf)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, "hello") // TLS 1.3: a refused client certificate shows on the first read
	}
	if err := roundTrip(client("connsrv-1")); err != nil {
		t.Fatalf("issued node certificate: %v", err)
	}
	// A deny file must exist at start (a typo must not turn revocation off).
	missing := client("connsrv-1")
	missing.DenyFile = p.path("no-such-file")
	if _, err := ClientConfig(missing); err == nil || !strings.Contains(err.Error(), "deny_file") {
		t.Fatalf("ClientConfig with a missing deny file: got %v, want a deny_file error", err)
	}

	// Another fleet's CA: refused.
	other := newFleetPKI(t)
	other.issue(t, "intruder")
	stranger := client("connsrv-1")
	stranger.CertFile, stranger.KeyFile = other.path("intruder.crt"), other.path("intruder.key")
	if err := roundTrip(stranger); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}

	// One client config for the rest: its deny list is re-read lazily.
	p.issue(t, "connsrv-2")
	c2, err := ClientConfig(client("connsrv-2"))
	if err != nil {
		t.Fatal(err)
	}
	reuse := func() error {
		c, err := dial(addr, c2)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, "hello")
	}

	// Revoke the client: the server refuses it after the reload interval.
	writeAtomic(t, deny, []byte("serial="+strings.ToUpper(p.serials["connsrv-1"])+"  # stolen laptop\n"))
	waitFor(t, "the revoked client refused", func() bool {
		err := roundTrip(client("connsrv-1"))
		return err != nil && strings.Contains(err.Error(), "bad certificate")
	})
	if err := reuse(); err != nil {
		t.Fatalf("a node not on the deny list: %v", err)
	}

	// A broken deny file keeps the last good list in force.
	writeAtomic(t, deny, []byte(p.serials["logic-1"]+"\nnot-a-serial\n"))
	time.Sleep(3 * interval)
	if err := reuse(); err != nil {
		t.Fatalf("after a broken deny file: %v (the last good list must stay)", err)
	}
	plain := client("connsrv-1") // its own deny list would refuse to load now
	plain.DenyFile = ""
	if err := roundTrip(plain); err == nil {
		t.Fatal("after a broken deny file the revoked client was let in")
	}

	// Revoke the server: the client config made before refuses it.
	writeAtomic(t, deny, []byte(p.serials["logic-1"]+"\n"))
	waitFor(t, "the revoked server refused", func() bool {
		err := reuse()
		return err != nil && strings.Contains(err.Error(), "revoked")
	})

	// Revoke the CA: everything it signed is refused.
	writeAtomic(t, deny, []byte(SerialHex(caSerial(t, p.caCert))+"\n"))
	waitFor(t, "a node of a revoked CA refused", func() bool {
		err := reuse()
		return err != nil && strings.Contains(err.Error(), "revoked")
	})
}

func caSerial(t *testing.T, certPEM []byte) *big.Int {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

func TestDenyFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, text string
		want       []string
		bad        bool
	}{
		{"empty", "", nil, false},
		{"comments and blanks", "# none\n\n   \n", nil, false},
		{"forms", "0A1b\nserial=00FF\n de:ad:be:ef # openssl form\n", []string{"a1b", "ff", "deadbeef"}, false},
		{"not hex", "xyz\n", nil, true},
		{"zero", "0\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, tc.name)
			if err := os.WriteFile(f, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			set, _, err := readDenyFile(f)
			if (err != nil) != tc.bad {
				t.Fatalf("readDenyFile: err %v, want error %v", err, tc.bad)
			}
			if len(set) != len(tc.want) {
				t.Fatalf("got %v, want %v", set, tc.want)
			}
			for _, s := range tc.want {
				if _, ok := set[s]; !ok {
					t.Fatalf("got %v, want %s in it", set, s)
				}
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	caCert, caKey, err := NewCA("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, _, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, _, err := Issue(caCert, caKey, "n", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	shortCert, shortKey, err := NewCA("expired", time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		node      string
		hosts     []string
	}{
		{"no name", caCert, caKey, "", []string{"h"}},
		{"no hosts", caCert, caKey, "n", nil},
		{"key of another CA", otherCert, caKey, "n", []string{"h"}},
		{"a leaf as CA", leaf, leafKey, "n", []string{"h"}},
		{"blank hosts", caCert, caKey, "n", []string{" ", ""}},
		{"an expired CA", shortCert, shortKey, "n", []string{"h"}},
		{"not PEM", []byte("x"), caKey, "n", []string{"h"}},
	} {
		if _, _, _, err := Issue(tc.cert, tc.key, tc.node, tc.hosts, time.Hour); err == nil {
			t.Errorf("%s: Issue succeeded", tc.name)
		}
	}
}
