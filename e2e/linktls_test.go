package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/tlsconf"
)

// linkPKI is a fleet CA made for one test with node certificates for
// 127.0.0.1 and localhost, so that the tiers' links run over mutual TLS
// 1.3 as a production fleet's must (docs/tls.md).
type linkPKI struct{ dir string }

func newLinkPKI(t *testing.T, nodes ...string) *linkPKI {
	t.Helper()
	p := &linkPKI{dir: t.TempDir()}
	// Long enough for a soak (PARLEY_CHAOS_DURATION).
	const validity = 30 * 24 * time.Hour
	caCert, caKey, err := tlsconf.NewCA("parley e2e fleet", validity)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(p.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", caCert)
	write("deny.txt", []byte("# none revoked\n"))
	for _, n := range nodes {
		cert, key, _, err := tlsconf.Issue(caCert, caKey, n, []string{"127.0.0.1", "localhost"}, validity)
		if err != nil {
			t.Fatal(err)
		}
		write(n+".crt", cert)
		write(n+".key", key)
	}
	return p
}

// args returns the -set flags that put node's links of tier ("logic" or
// "connsrv") on mutual TLS.
func (p *linkPKI) args(tier, node string) []string {
	f := func(name string) string { return filepath.Join(p.dir, name) }
	out := []string{
		"-set", tier + ".link_tls.cert_file=" + f(node+".crt"),
		"-set", tier + ".link_tls.key_file=" + f(node+".key"),
		"-set", tier + ".link_tls.ca_file=" + f("ca.crt"),
		"-set", tier + ".link_tls.deny_file=" + f("deny.txt"),
	}
	if tier == "logic" {
		out = append(out, "-set", "logic.link_tls.client_ca_file="+f("ca.crt"))
	}
	return out
}
