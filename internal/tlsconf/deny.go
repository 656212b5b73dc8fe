package tlsconf

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// denyList is the set of revoked certificate serial numbers of a deny
// file, re-read during handshakes (at most once per interval) when the
// file changed. A file that cannot be read or parsed after a change, or
// that changed while it was read (a copy in progress), keeps the last good
// set in force, is logged and counted, and is tried again at the next
// check.
type denyList struct {
	file      string
	interval  time.Duration
	log       *slog.Logger
	serials   atomic.Pointer[map[string]struct{}]
	lastLazy  atomic.Int64 // Unix ns of the last check
	ok, error *metrics.Counter

	mu     sync.Mutex  // guards the following
	seen   os.FileInfo // the file as last loaded
	failed os.FileInfo // the file as last refused (not tried again until it changes)
}

func newDenyList(file string, interval time.Duration, log *slog.Logger) (*denyList, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	label := fmt.Sprintf("file=%q", file)
	d := &denyList{file: file, interval: interval, log: log,
		ok:    metrics.GetOrCreateCounter(`parley_tls_deny_reloads_total{` + label + `,result="ok"}`),
		error: metrics.GetOrCreateCounter(`parley_tls_deny_reloads_total{` + label + `,result="error"}`)}
	set, fi, err := readStable(file)
	if err != nil {
		return nil, err
	}
	d.serials.Store(&set)
	d.seen = fi
	d.lastLazy.Store(time.Now().UnixNano())
	return d, nil
}

// readStable reads and parses the deny file, and fails when the file
// changed while it was read (a copy truncates before it writes: the
// half-written file must not pass for a shorter list).
func readStable(file string) (map[string]struct{}, os.FileInfo, error) {
	before, err := os.Stat(file)
	if err != nil {
		return nil, nil, fmt.Errorf("deny_file: %w", err)
	}
	set, size, err := readDenyFile(file)
	if err != nil {
		return nil, nil, err
	}
	after, err := os.Stat(file)
	if err != nil {
		return nil, nil, fmt.Errorf("deny_file: %w", err)
	}
	if !same(before, after) || size != after.Size() {
		return nil, nil, fmt.Errorf("deny_file %s changed while it was read", file)
	}
	return set, after, nil
}

// readDenyFile parses a deny file: one serial number per line in hex (as
// `parley certs issue` prints it, or `openssl x509 -serial`, with or
// without "serial=", colons and leading zeros), '#' starts a comment.
func readDenyFile(file string) (map[string]struct{}, int64, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, 0, fmt.Errorf("deny_file: %w", err)
	}
	set := map[string]struct{}{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		line = strings.TrimPrefix(strings.ToLower(line), "serial=")
		v, ok := new(big.Int).SetString(strings.ReplaceAll(line, ":", ""), 16)
		if !ok || v.Sign() <= 0 {
			return nil, 0, fmt.Errorf("deny_file %s line %d: %q is not a hex serial number", file, n, line)
		}
		set[SerialHex(v)] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("deny_file %s: %w", file, err)
	}
	return set, int64(len(raw)), nil
}

// checkLazily re-reads the file when it changed, at most once per
// interval.
func (d *denyList) checkLazily() {
	now := time.Now().UnixNano()
	last := d.lastLazy.Load()
	if now-last < int64(d.interval) || !d.lastLazy.CompareAndSwap(last, now) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fi, err := os.Stat(d.file)
	if err == nil && (same(fi, d.seen) || (d.failed != nil && same(fi, d.failed))) {
		return
	}
	set, loaded, err := readStable(d.file)
	if err != nil {
		d.failed = fi // nil when even the stat failed: tried at every check
		d.error.Inc()
		d.log.Warn("cannot reload the deny file; the previous list stays in force", "file", d.file, "err", err)
		return
	}
	d.serials.Store(&set)
	d.seen, d.failed = loaded, nil
	d.ok.Inc()
	d.log.Info("deny file reloaded", "file", d.file, "serials", len(set))
}

// verify refuses a connection whose peer presents a denied certificate:
// its leaf, or any certificate of the chains it was verified by (so a
// listed intermediate or CA refuses everything it signed).
func (d *denyList) verify(cs tls.ConnectionState) error {
	d.checkLazily()
	set := *d.serials.Load()
	check := func(c *x509.Certificate) error {
		if _, bad := set[SerialHex(c.SerialNumber)]; bad {
			return fmt.Errorf("certificate %q (serial %s) is revoked (deny_file)", c.Subject.CommonName, SerialHex(c.SerialNumber))
		}
		return nil
	}
	for _, c := range cs.PeerCertificates {
		if err := check(c); err != nil {
			return err
		}
	}
	for _, chain := range cs.VerifiedChains {
		for _, c := range chain {
			if err := check(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// Recheck runs conf's connection check (the deny list, when conf has one)
// again on an established connection c: a link made before its peer's
// certificate was revoked is cut by a caller that rechecks it from time to
// time. nil when c is not TLS or conf checks nothing. Safe for concurrent
// use.
func Recheck(conf *tls.Config, c net.Conn) error {
	tc, ok := c.(*tls.Conn)
	if !ok || conf == nil || conf.VerifyConnection == nil {
		return nil
	}
	return conf.VerifyConnection(tc.ConnectionState())
}
