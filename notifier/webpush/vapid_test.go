package webpush

import (
	"strings"
	"testing"
	"time"
)

func TestVAPIDKeys(t *testing.T) {
	v, err := GenerateVAPID()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mustB64(t, v.PublicKey())); n != KeySize {
		t.Fatalf("public key: got %d bytes, want %d", n, KeySize)
	}
	if n := len(mustB64(t, v.PrivateKey())); n != 32 {
		t.Fatalf("private key: got %d bytes, want 32", n)
	}
	other, _ := GenerateVAPID()
	tests := []struct {
		name        string
		pub, priv   string
		wantErr     bool
		wantSamePub bool
	}{
		{"both", v.PublicKey(), v.PrivateKey(), false, true},
		{"private only", "", v.PrivateKey(), false, true},
		{"padded", v.PublicKey() + "=", v.PrivateKey() + "=", false, true},
		{"mismatched", other.PublicKey(), v.PrivateKey(), true, false},
		{"bad private", "", "!!", true, false},
		{"short private", "", v.PrivateKey()[:20], true, false},
		{"zero private", "", b64.EncodeToString(make([]byte, 32)), true, false},
		{"bad public", "AAAA", v.PrivateKey(), true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseVAPID(tc.pub, tc.priv)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseVAPID: got error %v, want error %v", err, tc.wantErr)
			}
			if tc.wantSamePub && (got.PublicKey() != v.PublicKey() || got.PrivateKey() != v.PrivateKey()) {
				t.Fatalf("ParseVAPID: got keys %s/%s, want %s/%s", got.PublicKey(), got.PrivateKey(), v.PublicKey(), v.PrivateKey())
			}
		})
	}
}

func TestVAPIDToken(t *testing.T) {
	v, _ := GenerateVAPID()
	other, _ := GenerateVAPID()
	now := time.Unix(1_700_000_000, 0)
	const aud = "https://push.example.net"
	sign := func(c Claims) string {
		tok, err := v.Token(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(Claims{Aud: aud, Exp: now.Add(12 * time.Hour).Unix(), Sub: "mailto:ops@example.com"})
	parts := strings.Split(good, ".")
	tests := []struct {
		name    string
		token   string
		key     string
		aud     string
		wantErr string
	}{
		{"valid", good, v.PublicKey(), aud, ""},
		{"exp exactly 24h", sign(Claims{Aud: aud, Exp: now.Add(24 * time.Hour).Unix()}), v.PublicKey(), aud, ""},
		{"other key", good, other.PublicKey(), aud, "does not verify"},
		{"other audience", good, v.PublicKey(), "https://push.example.org", "aud"},
		{"expired", sign(Claims{Aud: aud, Exp: now.Unix()}), v.PublicKey(), aud, "expired"},
		{"too long", sign(Claims{Aud: aud, Exp: now.Add(25 * time.Hour).Unix()}), v.PublicKey(), aud, "ahead"},
		{"tampered claims", parts[0] + "." + b64.EncodeToString([]byte(`{"aud":"`+aud+`","exp":9999999999}`)) + "." + parts[2], v.PublicKey(), aud, "does not verify"},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "." + parts[2], v.PublicKey(), aud, "ES256"},
		{"two parts", parts[0] + "." + parts[1], v.PublicKey(), aud, "JWS"},
		{"short signature", parts[0] + "." + parts[1] + ".AAAA", v.PublicKey(), aud, "64 bytes"},
		{"bad key", good, "AAAA", aud, "key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyToken(tc.token, tc.key, tc.aud, now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyToken: %v", err)
				}
				if c.Aud != aud {
					t.Fatalf("claims: got %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("VerifyToken: got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		in         string
		token, key string
		wantErr    bool
	}{
		{"vapid t=a.b.c, k=BKey", "a.b.c", "BKey", false},
		{"vapid k=BKey,t=a.b.c", "a.b.c", "BKey", false},
		{"VAPID  t=a.b.c ,  k=BKey ", "a.b.c", "BKey", false},
		{"Bearer a.b.c", "", "", true},
		{"vapid t=a.b.c", "", "", true},
		{"vapid t, k=x", "", "", true},
		{"", "", "", true},
	}
	for _, tc := range tests {
		tok, key, err := ParseAuthorization(tc.in)
		if (err != nil) != tc.wantErr || tok != tc.token || key != tc.key {
			t.Errorf("ParseAuthorization(%q): got %q, %q, %v, want %q, %q, error %v", tc.in, tok, key, err, tc.token, tc.key, tc.wantErr)
		}
	}
}

func TestAudienceAndSubject(t *testing.T) {
	auds := []struct{ endpoint, want string }{
		{"https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"},
		{"https://push.example:8443/x?y=1", "https://push.example:8443"},
		{"http://127.0.0.1:9/p", "http://127.0.0.1:9"},
		{"ftp://x/y", ""},
		{"/relative", ""},
	}
	for _, tc := range auds {
		got, err := Audience(tc.endpoint)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("Audience(%q): got %q, %v, want %q", tc.endpoint, got, err, tc.want)
		}
	}
	subs := []struct {
		sub string
		ok  bool
	}{{"mailto:ops@example.com", true}, {"https://example.com/contact", true}, {"mailto:", false}, {"http://example.com", false}, {"", false}}
	for _, tc := range subs {
		if err := CheckSubject(tc.sub); (err == nil) != tc.ok {
			t.Errorf("CheckSubject(%q): got %v, want ok=%v", tc.sub, err, tc.ok)
		}
	}
}

// FuzzParseAuthorization: never panics; what parses has both parts.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("vapid t=a.b.c, k=BKey")
	f.Add("vapid ,,,=")
	f.Fuzz(func(t *testing.T, h string) {
		tok, key, err := ParseAuthorization(h)
		if err == nil && (tok == "" || key == "") {
			t.Fatalf("ParseAuthorization(%q): ok with an empty part", h)
		}
	})
}

// FuzzVerifyToken: never panics, and a mangled token never verifies.
func FuzzVerifyToken(f *testing.F) {
	v, _ := GenerateVAPID()
	now := time.Unix(1_700_000_000, 0)
	good, _ := v.Token(Claims{Aud: "https://p.example", Exp: now.Add(time.Hour).Unix()})
	f.Add(good)
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		_, err := VerifyToken(tok, v.PublicKey(), "https://p.example", now)
		if err == nil && tok != good {
			// Only a token signed by v may verify; ECDSA signatures are
			// malleable (s -> n-s), so allow a differing signature part.
			if i, j := strings.LastIndexByte(tok, '.'), strings.LastIndexByte(good, '.'); tok[:i] != good[:j] {
				t.Fatalf("VerifyToken(%q): verified a token v never signed", tok)
			}
		}
	})
}
