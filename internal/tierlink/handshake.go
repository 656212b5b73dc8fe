package tierlink

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// The versions of the link protocol this build speaks. Hello carries the
// dialer's range, HelloAck the highest version both ranges share.
const (
	MinVersion = 2
	MaxVersion = 3

	// VersionMessageFields is the first version whose Fanout carries the
	// message in the peer link's message encoding, with room for fields
	// (AppendMessage); links of version 2 keep the fixed layout.
	VersionMessageFields = 3
)

// NonceSize is the size of the handshake nonces; MACSize of a proof;
// HandshakeMaxFrame bounds the frames read before a link is
// authenticated.
const (
	NonceSize         = 32
	MACSize           = sha256.Size
	HandshakeMaxFrame = 1024
)

// Handshake errors.
var (
	// ErrLegacyHello: the peer sent a version-1 hello, from a build
	// before link authentication (which cannot authenticate).
	ErrLegacyHello = errors.New("tierlink: the peer speaks tier link version 1 (a build before link authentication); upgrade it")
	// ErrNoCommonVersion: the two version ranges do not overlap.
	ErrNoCommonVersion = errors.New("tierlink: no common tier link version")
	// ErrAuth: a proof of the link secret was missing or wrong.
	ErrAuth = errors.New("tierlink: link authentication failed")
)

// Hello is the payload of Hello and PeerHello: the dialer's version range,
// node id and challenge nonce.
type Hello struct {
	Min, Max uint8
	NodeID   string
	Nonce    [NonceSize]byte
}

// HelloAck is the payload of HelloAck: the version chosen, the accepting
// node's id and nonce, and its proof of the link secret (empty when it has
// none and relies on mutual TLS).
type HelloAck struct {
	Version uint8
	NodeID  string
	Nonce   [NonceSize]byte
	MAC     []byte
}

// AppendHello appends a Hello or PeerHello frame. A node id longer than
// 255 bytes is cut.
func AppendHello(dst []byte, t Type, h Hello) []byte {
	id := cut255(h.NodeID)
	dst = AppendHeader(dst, t, 0, 3+len(id)+NonceSize)
	dst = append(dst, h.Min, h.Max, byte(len(id)))
	dst = append(dst, id...)
	return append(dst, h.Nonce[:]...)
}

// ParseHello decodes a Hello or PeerHello payload. A version-1 hello
// (version u8 | idlen u8 | node id) is ErrLegacyHello.
func ParseHello(p []byte) (Hello, error) {
	if len(p) >= 2 && p[0] == 1 && len(p) == 2+int(p[1]) {
		return Hello{}, ErrLegacyHello
	}
	if len(p) < 3 || len(p) != 3+int(p[2])+NonceSize {
		return Hello{}, fmt.Errorf("%w: hello of %d bytes", ErrBadPayload, len(p))
	}
	n := 3 + int(p[2])
	h := Hello{Min: p[0], Max: p[1], NodeID: string(p[3:n])}
	copy(h.Nonce[:], p[n:])
	if h.Min == 0 || h.Min > h.Max {
		return Hello{}, fmt.Errorf("%w: hello version range %d-%d", ErrBadPayload, h.Min, h.Max)
	}
	return h, nil
}

// AppendHelloAck appends a HelloAck frame.
func AppendHelloAck(dst []byte, a HelloAck) []byte {
	id := cut255(a.NodeID)
	mac := a.MAC
	if len(mac) > 255 {
		mac = mac[:255]
	}
	dst = AppendHeader(dst, TypeHelloAck, 0, 2+len(id)+NonceSize+1+len(mac))
	dst = append(dst, a.Version, byte(len(id)))
	dst = append(dst, id...)
	dst = append(dst, a.Nonce[:]...)
	dst = append(dst, byte(len(mac)))
	return append(dst, mac...)
}

// ParseHelloAck decodes a HelloAck payload.
func ParseHelloAck(p []byte) (HelloAck, error) {
	if len(p) < 2 || len(p) < 2+int(p[1])+NonceSize+1 {
		return HelloAck{}, fmt.Errorf("%w: hello ack of %d bytes", ErrBadPayload, len(p))
	}
	n := 2 + int(p[1])
	a := HelloAck{Version: p[0], NodeID: string(p[2:n])}
	rest := p[n:]
	copy(a.Nonce[:], rest)
	rest = rest[NonceSize:]
	if len(rest) != 1+int(rest[0]) {
		return HelloAck{}, fmt.Errorf("%w: hello ack of %d bytes", ErrBadPayload, len(p))
	}
	if rest[0] > 0 {
		a.MAC = append([]byte(nil), rest[1:]...)
	}
	return a, nil
}

// AppendAuth appends an Auth frame: the dialer's proof of the link secret
// (empty when it has none and relies on mutual TLS).
func AppendAuth(dst []byte, mac []byte) []byte {
	return AppendFrame(dst, TypeAuth, 0, mac)
}

// Secret is a link secret shared by the nodes of a fleet (or the two
// halves of a standalone process). The empty Secret proves nothing: such a
// node relies on mutual TLS.
type Secret []byte

// transcript is what both proofs cover: the hello type (so a proof made
// for one kind of link does not open another), the dialer's whole version
// range and the version chosen (so a downgrade is caught), both node ids
// and nonces, and the channel binding (so a proof made on one TLS session
// does not open another).
type transcript struct {
	t       Type
	version uint8
	h       Hello
	a       HelloAck
	binding []byte
}

// mac proves knowledge of s over tr: role is "ack" (the accepting node) or
// "auth" (the dialer), so one side's proof is never the other's.
func (s Secret) mac(role string, tr transcript) []byte {
	if len(s) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, s)
	m.Write([]byte("parley tierlink v2 " + role + "\x00"))
	m.Write([]byte{byte(tr.t), tr.version, tr.h.Min, tr.h.Max, byte(len(cut255(tr.h.NodeID)))})
	m.Write([]byte(cut255(tr.h.NodeID)))
	m.Write(tr.h.Nonce[:])
	m.Write([]byte{byte(len(cut255(tr.a.NodeID)))})
	m.Write([]byte(cut255(tr.a.NodeID)))
	m.Write(tr.a.Nonce[:])
	m.Write([]byte{byte(len(tr.binding))})
	m.Write(tr.binding)
	return m.Sum(nil)
}

// check reports whether got proves s (an empty secret expects no proof).
func (s Secret) check(got []byte, role string, tr transcript) bool {
	want := s.mac(role, tr)
	if len(want) == 0 {
		return len(got) == 0
	}
	return hmac.Equal(got, want)
}

// Binding returns the channel binding of a TLS connection whose handshake
// is complete (RFC 9266 style: a keying-material exporter), nil for a
// plain connection. Both ends of one TLS session get the same bytes; a
// relay that terminates TLS on either side cannot make them match.
func Binding(c net.Conn) []byte {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("EXPORTER-parley-tierlink", nil, 32)
	if err != nil {
		return nil
	}
	return b
}

// Dialed is the outcome of a dialer's handshake.
type Dialed struct {
	Version uint8
	NodeID  string // the accepting node's id
}

// DialOptions tunes DialHandshake.
type DialOptions struct {
	// Binding is the connection's channel binding (Binding), nil on plain
	// TCP.
	Binding []byte
	// Check, when set, vets the accepting node before this node proves
	// the secret to it: an error ends the handshake without the proof
	// (e.g. a peer link that reached this very node).
	Check func(Dialed) error
	// MaxVersion, when between MinVersion and MaxVersion, offers only
	// versions up to it: a node of an older release, in tests.
	MaxVersion uint8
}

// DialHandshake runs the dialer's side on a fresh connection: it sends a
// Hello (or PeerHello, t) with this build's version range, checks the
// HelloAck's version and proof, and sends its own proof. With an empty
// secret neither side proves anything (the caller relies on mutual TLS);
// a peer that proves a secret this node lacks, or lacks one this node
// has, fails with ErrAuth. On plain TCP the proofs show that both ends
// hold the secret, not that nobody relays between them: only TLS (whose
// binding the proofs then cover) protects the stream. Deadlines are the
// caller's.
func DialHandshake(w io.Writer, r *Reader, t Type, nodeID string, secret Secret, opts DialOptions) (Dialed, error) {
	h := Hello{Min: MinVersion, Max: MaxVersion, NodeID: nodeID}
	if opts.MaxVersion >= MinVersion && opts.MaxVersion < MaxVersion {
		h.Max = opts.MaxVersion
	}
	if _, err := rand.Read(h.Nonce[:]); err != nil {
		return Dialed{}, err
	}
	if _, err := w.Write(AppendHello(nil, t, h)); err != nil {
		return Dialed{}, fmt.Errorf("cannot send hello: %w", err)
	}
	f, err := r.Next()
	if err != nil {
		return Dialed{}, fmt.Errorf("cannot read hello ack: %w", err)
	}
	if f.Type != TypeHelloAck {
		return Dialed{}, fmt.Errorf("%w: got %s, want hello_ack", ErrBadPayload, f.Type)
	}
	a, err := ParseHelloAck(f.Payload)
	if err != nil {
		return Dialed{}, err
	}
	if a.Version < h.Min || a.Version > h.Max {
		return Dialed{}, fmt.Errorf("%w: the peer chose %d, this node speaks %d-%d", ErrNoCommonVersion, a.Version, h.Min, h.Max)
	}
	h.NodeID = cut255(h.NodeID) // as the acceptor saw it
	tr := transcript{t: t, version: a.Version, h: h, a: a, binding: opts.Binding}
	if !secret.check(a.MAC, "ack", tr) {
		return Dialed{}, fmt.Errorf("%w: the peer's proof of the link secret is missing or wrong", ErrAuth)
	}
	d := Dialed{Version: a.Version, NodeID: a.NodeID}
	if opts.Check != nil {
		if err := opts.Check(d); err != nil {
			return d, err
		}
	}
	if _, err := w.Write(AppendAuth(nil, secret.mac("auth", tr))); err != nil {
		return Dialed{}, fmt.Errorf("cannot send auth: %w", err)
	}
	return d, nil
}

// Accepted is the outcome of an accepting node's handshake.
type Accepted struct {
	Version uint8
	Hello   Hello
	// Proved: the dialer proved the (non-empty) link secret.
	Proved bool
}

// AcceptHandshake runs the accepting side after the first frame (Hello or
// PeerHello) was read: it picks the highest version both ranges share,
// sends HelloAck with its proof of the secret and its nonce, and checks
// the dialer's Auth frame. binding is the connection's channel binding
// (Binding). With an empty secret it expects no proof and returns Proved
// false: the caller must then have authenticated the dialer otherwise
// (mutual TLS) or refuse it. Deadlines are the caller's.
func AcceptHandshake(w io.Writer, r *Reader, first Frame, nodeID string, secret Secret, binding []byte) (Accepted, error) {
	h, err := ParseHello(first.Payload)
	if err != nil {
		return Accepted{}, err
	}
	v := min(h.Max, MaxVersion)
	if v < max(h.Min, MinVersion) {
		return Accepted{}, fmt.Errorf("%w: the peer speaks %d-%d, this node %d-%d", ErrNoCommonVersion, h.Min, h.Max, MinVersion, MaxVersion)
	}
	a := HelloAck{Version: v, NodeID: cut255(nodeID)}
	if _, err := rand.Read(a.Nonce[:]); err != nil {
		return Accepted{}, err
	}
	tr := transcript{t: first.Type, version: v, h: h, a: a, binding: binding}
	a.MAC = secret.mac("ack", tr)
	if _, err := w.Write(AppendHelloAck(nil, a)); err != nil {
		return Accepted{}, fmt.Errorf("cannot send hello ack: %w", err)
	}
	f, err := r.Next()
	if err != nil {
		return Accepted{}, fmt.Errorf("cannot read auth: %w", err)
	}
	if f.Type != TypeAuth {
		return Accepted{}, fmt.Errorf("%w: got %s, want auth", ErrAuth, f.Type)
	}
	if !secret.check(f.Payload, "auth", tr) {
		return Accepted{}, fmt.Errorf("%w: the dialer's proof of the link secret is missing or wrong", ErrAuth)
	}
	return Accepted{Version: v, Hello: h, Proved: len(secret) > 0}, nil
}

// MinSecretSize is the shortest link secret accepted.
const MinSecretSize = 32

// LoadSecret returns the link secret given inline or, when inline is
// empty, read from file (surrounding white space trimmed); empty when
// both are. prefix names the settings in errors.
func LoadSecret(prefix, inline, file string) (Secret, error) {
	if inline != "" && file != "" {
		return nil, fmt.Errorf("%s.link_secret and %s.link_secret_file: set one", prefix, prefix)
	}
	s := []byte(inline)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s.link_secret_file: %w", prefix, err)
		}
		s = b
	}
	s = bytes.TrimSpace(s)
	if len(s) > 0 && len(s) < MinSecretSize {
		return nil, fmt.Errorf("%s.link_secret: %d bytes, want at least %d (e.g. openssl rand -hex 32)", prefix, len(s), MinSecretSize)
	}
	if len(s) == 0 {
		return nil, nil
	}
	return Secret(s), nil
}
