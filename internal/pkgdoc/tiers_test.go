package pkgdoc

import (
	"errors"
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tierRules are the tier rules of ARCHITECTURE.md ("Repository layout")
// as data: for each package (a pattern, see match) the module packages its
// non-test files may import. The most specific pattern applies. A package
// no pattern covers fails the test, so a new folder comes with a rule.
var tierRules = []struct {
	pkg string
	may []string
}{
	// Leaf packages shared by the tiers import only each other.
	{"internal/...", []string{"internal/..."}},
	// The storage contract is the domain records and nothing else; a
	// backend knows the contract, never a tier; only the table knows the
	// backends.
	{"storage", []string{"internal/record"}},
	{"storage/...", []string{"internal/...", "storage"}},
	{"storage/backends", []string{"storage", "storage/pebble", "storage/scylla"}},
	// Infrastructure adapters talk to Redis and Kafka in record's terms.
	{"adapters/...", []string{"internal/..."}},
	// The tiers: none imports another, a backend or an adapter (cmd wires
	// them); logic and the notifier see storage only as the contract.
	{"connsrv/...", []string{"internal/...", "connsrv/..."}},
	{"logic/...", []string{"internal/...", "logic/...", "storage", "api"}},
	{"notifier/...", []string{"internal/...", "notifier/...", "storage"}},
	{"api/...", []string{"api/..."}},
	// Clients and tools are outside the server: no tier.
	{"client/...", []string{"internal/...", "client/..."}},
	{"loadtest/...", []string{"internal/...", "loadtest/..."}},
	{"bench/...", []string{"internal/...", "bench/..."}},
	// Wiring and the tests that span tiers may import anything.
	{"cmd/...", []string{"..."}},
	{"e2e/...", []string{"..."}},
	{"deploy/...", []string{"..."}},
	{"scripts/...", []string{"..."}},
}

// match reports whether the module-relative package path p matches
// pattern: "a/..." is a and everything under it, "..." is everything,
// anything else is that one package.
func match(pattern, p string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

// specificity orders patterns: an exact path beats a subtree, and a
// deeper subtree beats a shallower one.
func specificity(pattern string) int {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return 2 * strings.Count(base, "/")
	}
	return 2*strings.Count(pattern, "/") + 1
}

// allowedImport reports whether package p (module-relative) may import
// the module package imp, and whether any rule covers p.
func allowedImport(p, imp string) (allowed, covered bool) {
	best := -1
	var may []string
	subtree := false
	for _, r := range tierRules {
		if match(r.pkg, p) && specificity(r.pkg) > best {
			best, may, subtree = specificity(r.pkg), r.may, strings.HasSuffix(r.pkg, "/...")
		}
	}
	if best < 0 {
		return false, false
	}
	if subtree && match(p+"/...", imp) {
		return true, true // a package's own subpackages, under a subtree rule
	}
	return slices.ContainsFunc(may, func(m string) bool { return match(m, imp) }), true
}

func TestTierImports(t *testing.T) {
	root := moduleRoot(t)
	const module = "github.com/parley-chat/parley"
	checked := 0
	for _, dir := range packageDirs(t, root) {
		rel, _ := filepath.Rel(root, dir)
		rel = filepath.ToSlash(rel)
		pkg, err := build.ImportDir(dir, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) || rel == "." {
			continue
		}
		if err != nil {
			t.Errorf("%s: cannot read package: %v", rel, err)
			continue
		}
		checked++
		if _, covered := allowedImport(rel, rel); !covered {
			t.Errorf("%s: no tier rule covers this package: add one to tierRules (and ARCHITECTURE.md's layout)", rel)
			continue
		}
		for _, imp := range pkg.Imports {
			own, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if allowed, _ := allowedImport(rel, own); !allowed {
				t.Errorf("%s imports %s, which the tier rules forbid (tierRules, ARCHITECTURE.md)", rel, own)
			}
		}
	}
	if checked == 0 {
		t.Fatalf("found no packages under %s", root)
	}
	t.Logf("checked the imports of %d packages", checked)
}

// TestTierRules makes sure the rules say what ARCHITECTURE.md says, and
// that the checker would catch a break.
func TestTierRules(t *testing.T) {
	tests := []struct {
		pkg, imp string
		want     bool
	}{
		{"connsrv", "internal/tierlink", true},
		{"connsrv", "logic", false},
		{"connsrv/wsframe", "internal/record", true},
		{"connsrv/wsframe", "logic/seq", false},
		{"logic", "logic/seq", true},
		{"logic", "storage", true},
		{"logic", "storage/pebble", false},
		{"logic", "adapters/directory", false},
		{"logic", "connsrv", false},
		{"logic/seq", "internal/record", true},
		{"logic/seq", "storage/scylla", false},
		{"notifier", "storage", true},
		{"notifier", "logic", false},
		{"storage", "internal/proto", false},
		{"storage", "storage/pebble", false}, // an exact rule allows no subpackage
		{"storage/pebble", "storage", true},
		{"storage/pebble", "logic", false},
		{"storage/scylla", "storage/pebble", false},
		{"storage/backends", "storage/scylla", true},
		{"internal/proto", "internal/record", true},
		{"internal/record", "logic", false},
		{"adapters/directory", "internal/proto", true},
		{"adapters/directory", "logic", false},
		{"client", "logic", false},
		{"bench", "internal/wsclient", true},
		{"bench", "loadtest", false},
		{"cmd/parley", "storage/pebble", true},
	}
	for _, tt := range tests {
		got, covered := allowedImport(tt.pkg, tt.imp)
		if got != tt.want || !covered {
			t.Errorf("%s -> %s: allowed %v (covered %v), want %v", tt.pkg, tt.imp, got, covered, tt.want)
		}
	}
	if _, covered := allowedImport("newtier", "internal/record"); covered {
		t.Error("a package no rule names is covered")
	}
}
