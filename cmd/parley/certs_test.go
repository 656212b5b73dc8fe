package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/tlsconf"
)

// TestCertsCmd: init, issue and revoke write what the tier links load —
// a CA, node certificates that tlsconf accepts, and a deny file naming a
// revoked node's serial — keep keys private and never overwrite.
func TestCertsCmd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := certsCmd(args, &out)
		return out.String(), err
	}
	if _, err := run("issue", "-dir", dir, "-name", "logic-1", "-host", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "parley certs init") {
		t.Fatalf("issue before init: got %v, want a hint to run init", err)
	}
	if _, err := run("init", "-dir", dir); err != nil {
		t.Fatalf("init: %v", err)
	}
	if _, err := run("init", "-dir", dir); err == nil {
		t.Fatal("a second init overwrote the CA")
	}
	out, err := run("issue", "-dir", dir, "-name", "logic-1", "-host", "127.0.0.1, logic-1.parley.svc")
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if _, err := run("issue", "-dir", dir, "-name", "logic-1", "-host", "127.0.0.1"); err == nil {
		t.Fatal("a second issue overwrote logic-1's key")
	}
	if _, err := run("issue", "-dir", dir, "-name", "../x", "-host", "127.0.0.1"); err == nil {
		t.Fatal("issue took a name with a path in it")
	}
	for _, f := range []string{"ca.key", "logic-1.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	// The files serve a TLS server with client certificates and a deny
	// file, as link_tls loads them.
	cfg := tlsconf.Config{CertFile: filepath.Join(dir, "logic-1.crt"), KeyFile: filepath.Join(dir, "logic-1.key"),
		ClientCAFile: filepath.Join(dir, "ca.crt"), DenyFile: filepath.Join(dir, "deny.txt")}
	_, stop, err := tlsconf.ServerConfig(cfg, nil)
	if err != nil {
		t.Fatalf("ServerConfig from the issued files: %v", err)
	}
	stop()
	serial := out[strings.LastIndex(out, "serial ")+len("serial "):]
	serial = strings.TrimSpace(serial)
	if _, err := run("revoke", "-dir", dir, "-name", "logic-1"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	deny, err := os.ReadFile(filepath.Join(dir, "deny.txt"))
	if err != nil || !strings.Contains(string(deny), serial+" # logic-1") {
		t.Fatalf("deny.txt after revoke: %q, %v; want serial %s of logic-1", deny, err, serial)
	}
	if _, err := run("revoke", "-dir", dir, "-serial", "DE:AD:be:ef"); err != nil {
		t.Fatalf("revoke -serial: %v", err)
	}
	if deny, _ := os.ReadFile(filepath.Join(dir, "deny.txt")); !strings.Contains(string(deny), "deadbeef # serial deadbeef") {
		t.Fatalf("deny.txt after revoke -serial: %q", deny)
	}
	for _, bad := range [][]string{{"-name", "../x"}, {"-serial", "xyz"}, {"-name", "logic-1", "-serial", "ff"}, {"-name", "nobody"}} {
		if _, err := run(append([]string{"revoke", "-dir", dir}, bad...)...); err == nil {
			t.Fatalf("revoke %v succeeded", bad)
		}
	}
	if _, err := run("frobnicate", "-dir", dir); err == nil {
		t.Fatal("an unknown subcommand succeeded")
	}
}
