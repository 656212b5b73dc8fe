package webpush

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
)

// RFC 8291 Appendix A: the example encrypted push message.
var rfc8291 = struct {
	plaintext, asPrivate, asPublic, uaPrivate, uaPublic, salt, auth, body string
}{
	plaintext: "When I grow up, I want to be a watermelon",
	asPrivate: "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
	asPublic:  "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
	uaPrivate: "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
	uaPublic:  "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
	salt:      "DGv6ra1nlYgDCS1FRnbzlw",
	auth:      "BTBZMqHH6r4Tts7J_aSIgg",
	body: "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_" +
		"yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := decodeB64(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return b
}

func mustECDH(t testing.TB, priv string) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().NewPrivateKey(mustB64(t, priv))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRFC8291Vector(t *testing.T) {
	v := rfc8291
	as, ua := mustECDH(t, v.asPrivate), mustECDH(t, v.uaPrivate)
	if got := b64.EncodeToString(as.PublicKey().Bytes()); got != v.asPublic {
		t.Fatalf("as public key: got %s, want %s", got, v.asPublic)
	}
	if got := b64.EncodeToString(ua.PublicKey().Bytes()); got != v.uaPublic {
		t.Fatalf("ua public key: got %s, want %s", got, v.uaPublic)
	}
	want := mustB64(t, v.body)
	got, err := EncryptWith([]byte(v.plaintext), mustB64(t, v.uaPublic), mustB64(t, v.auth), as, mustB64(t, v.salt))
	if err != nil {
		t.Fatalf("EncryptWith: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("EncryptWith:\ngot  %s\nwant %s", b64.EncodeToString(got), v.body)
	}
	plain, err := Decrypt(want, ua, mustB64(t, v.auth))
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(plain) != v.plaintext {
		t.Fatalf("Decrypt: got %q, want %q", plain, v.plaintext)
	}
}

func TestEncryptDecrypt(t *testing.T) {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	authSecret := make([]byte, AuthSize)
	rand.Read(authSecret)
	otherAuth := bytes.Repeat([]byte{7}, AuthSize)
	other, _ := ecdh.P256().GenerateKey(rand.Reader)

	tests := []struct {
		name      string
		plaintext []byte
		decryptBy *ecdh.PrivateKey
		auth      []byte
		wantErr   bool
	}{
		{"empty", nil, ua, authSecret, false},
		{"json", []byte(`{"chat":"g:a","seq":1}`), ua, authSecret, false},
		{"trailing zeros survive", []byte("a\x00\x00"), ua, authSecret, false},
		{"max", bytes.Repeat([]byte{'x'}, MaxPayload), ua, authSecret, false},
		{"wrong key", []byte("x"), other, authSecret, true},
		{"wrong auth", []byte("x"), ua, otherAuth, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := Encrypt(tc.plaintext, ua.PublicKey().Bytes(), authSecret)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if len(body) > 4096 {
				t.Fatalf("body of %d bytes, want at most 4096", len(body))
			}
			got, err := Decrypt(body, tc.decryptBy, tc.auth)
			if tc.wantErr {
				if !errors.Is(err, ErrDecrypt) {
					t.Fatalf("Decrypt: got %v, want ErrDecrypt", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Decrypt: got %q, %v, want %q", got, err, tc.plaintext)
			}
		})
	}
	if _, err := Encrypt(make([]byte, MaxPayload+1), ua.PublicKey().Bytes(), authSecret); err == nil {
		t.Fatalf("Encrypt(MaxPayload+1 bytes): got nil error")
	}
	if _, err := Encrypt(nil, []byte{4, 1, 2}, authSecret); err == nil {
		t.Fatalf("Encrypt(bad key): got nil error")
	}
	if _, err := Encrypt(nil, ua.PublicKey().Bytes(), authSecret[:8]); err == nil {
		t.Fatalf("Encrypt(short auth): got nil error")
	}
}

// FuzzDecrypt checks that Decrypt never panics on any body, also split in
// two, and that a body it accepts re-encrypts to one it accepts with the
// same plaintext.
func FuzzDecrypt(f *testing.F) {
	ua := mustECDH(f, rfc8291.uaPrivate)
	authSecret := mustB64(f, rfc8291.auth)
	f.Add(mustB64(f, rfc8291.body))
	f.Add([]byte{})
	f.Add(make([]byte, headerSize+minRecord))
	valid, _ := Encrypt([]byte("seed"), ua.PublicKey().Bytes(), authSecret)
	f.Add(valid)
	f.Fuzz(func(t *testing.T, body []byte) {
		for i := 0; i <= len(body); i += max(1, len(body)/8) {
			_, _ = Decrypt(body[:i], ua, authSecret)
			_, _ = Decrypt(body[i:], ua, authSecret)
		}
		plain, err := Decrypt(body, ua, authSecret)
		if err != nil || len(plain) > MaxPayload {
			return
		}
		again, err := Encrypt(plain, ua.PublicKey().Bytes(), authSecret)
		if err != nil {
			t.Fatalf("re-encrypt: %v", err)
		}
		if got, err := Decrypt(again, ua, authSecret); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("re-encrypted body: got %q, %v, want %q", got, err, plain)
		}
	})
}
