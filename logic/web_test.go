package logic

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestServesWebDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<h1>parley</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := startService(t, newMemStore(), func(c *Config) { c.WebDir = dir })
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + svc.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/"); code != 200 || body != "<h1>parley</h1>" {
		t.Fatalf("GET /: got %d %q", code, body)
	}
	if code, _ := get("/missing.js"); code != 404 {
		t.Fatalf("GET /missing.js: got %d, want 404", code)
	}
	if code, _ := get("/v1/chats"); code != 401 {
		t.Fatalf("GET /v1/chats without token: got %d, want 401 (API still wins)", code)
	}
}
