package webpush

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of the aes128gcm coding as RFC 8291 uses it.
const (
	SaltSize     = 16
	AuthSize     = 16   // the user agent's auth secret
	KeySize      = 65   // an uncompressed P-256 point
	RecordSize   = 4096 // the rs we write
	headerSize   = SaltSize + 4 + 1 + KeySize
	tagSize      = 16
	minRecord    = tagSize + 1 // a record holds at least the delimiter
	delimiterEnd = 0x02        // padding delimiter of the last record
	// MaxPayload is the largest plaintext Encrypt takes: the body is then
	// 4096 bytes, the size every push service must accept (RFC 8030
	// section 7.2).
	MaxPayload = 4096 - headerSize - tagSize - 1
)

var (
	infoCEK   = "Content-Encoding: aes128gcm\x00"
	infoNonce = "Content-Encoding: nonce\x00"
)

// Encrypt encrypts plaintext for the user agent whose public key (65-byte
// uncompressed point) and auth secret (16 bytes) are given, with a fresh
// ephemeral key pair and salt, and returns the aes128gcm body.
func Encrypt(plaintext, uaPublic, authSecret []byte) ([]byte, error) {
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cannot generate ephemeral key: %w", err)
	}
	salt := make([]byte, SaltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("cannot generate salt: %w", err)
	}
	return EncryptWith(plaintext, uaPublic, authSecret, as, salt)
}

// EncryptWith is Encrypt with the application server's ephemeral key and
// the salt given: deterministic, for test vectors. Never reuse either for
// two messages.
func EncryptWith(plaintext, uaPublic, authSecret []byte, as *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if len(plaintext) > MaxPayload {
		return nil, fmt.Errorf("cannot encrypt push payload: %d bytes, limit %d", len(plaintext), MaxPayload)
	}
	if len(salt) != SaltSize {
		return nil, fmt.Errorf("cannot encrypt push payload: salt of %d bytes, want %d", len(salt), SaltSize)
	}
	ua, err := ecdh.P256().NewPublicKey(uaPublic)
	if err != nil {
		return nil, fmt.Errorf("cannot encrypt push payload: bad p256dh key: %w", err)
	}
	asPublic := as.PublicKey().Bytes()
	gcm, nonce, err := deriveRecordKey(as, ua, uaPublic, asPublic, authSecret, salt)
	if err != nil {
		return nil, fmt.Errorf("cannot encrypt push payload: %w", err)
	}
	body := make([]byte, headerSize, headerSize+len(plaintext)+1+tagSize)
	copy(body, salt)
	binary.BigEndian.PutUint32(body[SaltSize:], RecordSize)
	body[SaltSize+4] = KeySize
	copy(body[SaltSize+5:], asPublic)
	rec := append(body[headerSize:], plaintext...)
	rec = append(rec, delimiterEnd)
	gcm.Seal(rec[:0], nonce, rec, nil)
	return body[:headerSize+len(rec)+tagSize], nil
}

// deriveRecordKey runs the RFC 8291 section 3.4 key schedule. priv is our
// private key and peer the other side's public key; uaPublic and asPublic
// are the two public keys in their fixed roles.
func deriveRecordKey(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, uaPublic, asPublic, authSecret, salt []byte) (cipher.AEAD, []byte, error) {
	if len(authSecret) != AuthSize {
		return nil, nil, fmt.Errorf("auth secret of %d bytes, want %d", len(authSecret), AuthSize)
	}
	shared, err := priv.ECDH(peer)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot agree on a key: %w", err)
	}
	keyInfo := make([]byte, 0, 14+2*KeySize)
	keyInfo = append(keyInfo, "WebPush: info\x00"...)
	keyInfo = append(keyInfo, uaPublic...)
	keyInfo = append(keyInfo, asPublic...)
	ikm, err := hkdf.Key(sha256.New, shared, authSecret, string(keyInfo), 32)
	if err != nil {
		return nil, nil, err
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, nil, err
	}
	cek, err := hkdf.Expand(sha256.New, prk, infoCEK, 16)
	if err != nil {
		return nil, nil, err
	}
	nonce, err := hkdf.Expand(sha256.New, prk, infoNonce, 12)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return gcm, nonce, nil
}

// ErrDecrypt is wrapped by every Decrypt failure.
var ErrDecrypt = errors.New("webpush: cannot decrypt")

// Decrypt is the user agent's side of Encrypt: it decrypts an aes128gcm
// body with the user agent's private key and auth secret. Only one record
// is accepted (RFC 8291 section 4). It never panics, whatever body holds.
func Decrypt(body []byte, ua *ecdh.PrivateKey, authSecret []byte) ([]byte, error) {
	if len(body) < SaltSize+5 {
		return nil, fmt.Errorf("%w: body of %d bytes is shorter than a header", ErrDecrypt, len(body))
	}
	salt := body[:SaltSize]
	rs := binary.BigEndian.Uint32(body[SaltSize:])
	idlen := int(body[SaltSize+4])
	if idlen != KeySize {
		return nil, fmt.Errorf("%w: key id of %d bytes, want %d", ErrDecrypt, idlen, KeySize)
	}
	if len(body) < headerSize {
		return nil, fmt.Errorf("%w: body of %d bytes is shorter than its header", ErrDecrypt, len(body))
	}
	if rs < minRecord {
		return nil, fmt.Errorf("%w: record size %d is below %d", ErrDecrypt, rs, minRecord)
	}
	rec := body[headerSize:]
	if len(rec) < minRecord {
		return nil, fmt.Errorf("%w: record of %d bytes is shorter than %d", ErrDecrypt, len(rec), minRecord)
	}
	if uint64(len(rec)) > uint64(rs) {
		return nil, fmt.Errorf("%w: %d bytes of records with rs %d: only one record is allowed", ErrDecrypt, len(rec), rs)
	}
	asPublic := body[SaltSize+5 : headerSize]
	as, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: bad key id: %v", ErrDecrypt, err)
	}
	gcm, nonce, err := deriveRecordKey(ua, as, ua.PublicKey().Bytes(), asPublic, authSecret, salt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	plain, err := gcm.Open(nil, nonce, rec, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 || plain[i] != delimiterEnd {
		return nil, fmt.Errorf("%w: last record lacks the 0x02 padding delimiter", ErrDecrypt)
	}
	return plain[:i], nil
}
