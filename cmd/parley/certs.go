package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tlsconf"
)

func runCerts(args []string) error { return certsCmd(args, os.Stdout) }

// certsCmd manages a fleet's tier-link certificates in one directory:
//
//	parley certs init   -dir D            D/ca.crt, D/ca.key, an empty D/deny.txt
//	parley certs issue  -dir D -name N -host H[,H...]   D/N.crt, D/N.key
//	parley certs revoke -dir D -name N    N's serial appended to D/deny.txt
//	parley certs revoke -dir D -serial S  (a certificate no longer at hand)
//
// Keys are written 0600 and never overwritten.
func certsCmd(args []string, out io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: parley certs init|issue|revoke -dir DIR [-name NODE -host HOST,...] (-h for flags)")
	}
	sub := args[0]
	fs := flag.NewFlagSet("certs "+sub, flag.ContinueOnError)
	dir := fs.String("dir", "certs", "directory of the fleet's CA, node certificates and deny.txt")
	days := fs.Int("days", 0, "validity in days (default: 3650 for init, 90 for issue; a node's is capped at the CA's)")
	name := fs.String("name", "", "issue, revoke: the node's name (its certificate's common name and file name)")
	hosts := fs.String("host", "", "issue: comma-separated IP addresses and DNS names other nodes dial this node by")
	serialFlag := fs.String("serial", "", "revoke: a serial number in hex, instead of -name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	validity := func(def int) time.Duration {
		if *days > 0 {
			def = *days
		}
		return time.Duration(def) * 24 * time.Hour
	}
	switch sub {
	case "init":
		cert, key, err := tlsconf.NewCA("parley fleet CA", validity(3650))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return err
		}
		if err := writeNew(filepath.Join(*dir, "ca.key"), key, 0o600); err != nil {
			return err
		}
		if err := writeNew(filepath.Join(*dir, "ca.crt"), cert, 0o644); err != nil {
			return err
		}
		if err := writeNew(filepath.Join(*dir, "deny.txt"), []byte("# serial numbers of revoked link certificates (parley certs revoke)\n"), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "fleet CA in %s: ca.crt (give it to every node), ca.key (keep it off the nodes), deny.txt\n", *dir)
		return nil
	case "issue":
		if !record.ValidID(*name) {
			return fmt.Errorf("-name %q: want a node name of letters, digits, '-', '_', '.', '@'", *name)
		}
		caCert, caKey, err := readCA(*dir)
		if err != nil {
			return err
		}
		var hs []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		cert, key, serial, err := tlsconf.Issue(caCert, caKey, *name, hs, validity(90))
		if err != nil {
			return err
		}
		if err := writeNew(filepath.Join(*dir, *name+".key"), key, 0o600); err != nil {
			return err
		}
		if err := writeNew(filepath.Join(*dir, *name+".crt"), cert, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s/%s.crt and %s.key for %s, serial %s\n", *dir, *name, *name, strings.Join(hs, ", "), serial)
		return nil
	case "revoke":
		serial, what, err := revokedSerial(*dir, *name, *serialFlag)
		if err != nil {
			return fmt.Errorf("cannot revoke: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(*dir, "deny.txt"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(f, "%s # %s, revoked %s\n", serial, what, time.Now().UTC().Format(time.RFC3339))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s (serial %s) added to %s/deny.txt: replace every node's link_tls.deny_file with it (atomically: copy, then rename); they refuse it within link_tls.reload_interval\n", what, serial, *dir)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q: want init, issue or revoke", sub)
}

// revokedSerial returns the serial to deny, from -serial or from the
// certificate of -name in dir, and how to name it in the file.
func revokedSerial(dir, name, serial string) (string, string, error) {
	switch {
	case serial != "" && name != "":
		return "", "", errors.New("give -name or -serial, not both")
	case serial != "":
		v, ok := new(big.Int).SetString(strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(serial), "serial="), ":", ""), 16)
		if !ok || v.Sign() <= 0 {
			return "", "", fmt.Errorf("-serial %q is not a hex serial number", serial)
		}
		return tlsconf.SerialHex(v), "serial " + tlsconf.SerialHex(v), nil
	case !record.ValidID(name):
		return "", "", fmt.Errorf("-name %q: want the name a certificate was issued under, or -serial", name)
	}
	raw, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return "", "", err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return "", "", fmt.Errorf("%s.crt is not PEM", name)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", "", fmt.Errorf("%s.crt: %w", name, err)
	}
	return tlsconf.SerialHex(c.SerialNumber), name, nil
}

func readCA(dir string) (cert, key []byte, err error) {
	if cert, err = os.ReadFile(filepath.Join(dir, "ca.crt")); err != nil {
		return nil, nil, fmt.Errorf("no fleet CA (parley certs init -dir %s): %w", dir, err)
	}
	if key, err = os.ReadFile(filepath.Join(dir, "ca.key")); err != nil {
		return nil, nil, fmt.Errorf("no CA key in %s: %w", dir, err)
	}
	return cert, key, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
