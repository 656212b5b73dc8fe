package tlsconf

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// denyList is the set of revoked certificate serial numbers of a deny
// file, re-read during handshakes (at most once per interval) when the
// file changed. A file that cannot be read or parsed after a change keeps
// the last good set in force and is tried again at the next check.
type denyList struct {
	file     string
	interval time.Duration
	serials  atomic.Pointer[map[string]struct{}]
	lastLazy atomic.Int64 // Unix ns of the last check

	mu   sync.Mutex // guards seen
	seen os.FileInfo
}

func newDenyList(file string, interval time.Duration) (*denyList, error) {
	d := &denyList{file: file, interval: interval}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("deny_file: %w", err)
	}
	set, err := readDenyFile(file)
	if err != nil {
		return nil, err
	}
	d.serials.Store(&set)
	d.seen = fi
	d.lastLazy.Store(time.Now().UnixNano())
	return d, nil
}

// readDenyFile parses a deny file: one serial number per line in hex (as
// `parley certs issue` prints it, or `openssl x509 -serial`, with or
// without "serial=", colons and leading zeros), '#' starts a comment.
func readDenyFile(file string) (map[string]struct{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("deny_file: %w", err)
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
			return nil, fmt.Errorf("deny_file %s line %d: %q is not a hex serial number", file, n, line)
		}
		set[SerialHex(v)] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("deny_file %s: %w", file, err)
	}
	return set, nil
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
	if err != nil || same(fi, d.seen) {
		return
	}
	set, err := readDenyFile(d.file)
	if err != nil {
		return
	}
	d.serials.Store(&set)
	d.seen = fi
}

// verify refuses a connection whose peer presents a denied certificate
// (the leaf or any certificate of its chain).
func (d *denyList) verify(cs tls.ConnectionState) error {
	d.checkLazily()
	set := *d.serials.Load()
	for _, c := range cs.PeerCertificates {
		if _, bad := set[SerialHex(c.SerialNumber)]; bad {
			return fmt.Errorf("certificate %q (serial %s) is revoked (deny_file)", c.Subject.CommonName, SerialHex(c.SerialNumber))
		}
	}
	return nil
}
