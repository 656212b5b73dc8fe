package pkgdoc

import (
	"errors"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find go.mod above the working directory")
		}
		dir = parent
	}
}

// skipDir reports whether the walk should not enter the directory name.
func skipDir(name string) bool {
	return name == "testdata" || name == "node_modules" || name == "vendor" ||
		strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// packageDirs returns every directory under root that the go tool would
// treat as part of root's module, excluding nested modules.
func packageDirs(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root {
			if skipDir(d.Name()) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // a nested module checks itself
			}
		}
		dirs = append(dirs, path)
		return nil
	})
	if err != nil {
		t.Fatalf("cannot walk %s: %v", root, err)
	}
	return dirs
}

// packageDoc returns the package's name and the text of its doc comment
// ("" when no file of the package has one).
func packageDoc(dir string) (name, doc string, ok bool, err error) {
	pkg, err := build.ImportDir(dir, 0)
	var noGo *build.NoGoError
	if errors.As(err, &noGo) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	files := append(append([]string(nil), pkg.GoFiles...), pkg.CgoFiles...)
	if len(files) == 0 {
		return "", "", false, nil // tests only (e.g. an e2e suite)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return "", "", false, err
		}
		if f.Doc != nil {
			if text := strings.TrimSpace(f.Doc.Text()); text != "" {
				return pkg.Name, text, true, nil
			}
		}
	}
	return pkg.Name, "", true, nil
}

func TestPackageDocs(t *testing.T) {
	root := moduleRoot(t)
	checked := 0
	for _, dir := range packageDirs(t, root) {
		rel, _ := filepath.Rel(root, dir)
		name, doc, ok, err := packageDoc(dir)
		if err != nil {
			t.Errorf("%s: cannot read package: %v", rel, err)
			continue
		}
		if !ok {
			continue
		}
		checked++
		switch {
		case doc == "":
			t.Errorf("%s: package %s has no doc comment (add a doc.go)", rel, name)
		case name != "main" && !strings.HasPrefix(doc, "Package "+name+" "):
			t.Errorf("%s: doc comment of package %s must start with %q, got %q", rel, name, "Package "+name+" ", firstLine(doc))
		}
	}
	if checked == 0 {
		t.Fatalf("found no packages under %s", root)
	}
	t.Logf("checked %d packages under %s", checked, root)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// TestPackageDocChecker makes sure the checker itself notices problems.
func TestPackageDocChecker(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantOK  bool
		wantDoc string
	}{
		{"no_go_files", map[string]string{"README.md": "hi"}, false, ""},
		{"only_tests", map[string]string{"x_test.go": "// Package x is x.\npackage x\n"}, false, ""},
		{"missing", map[string]string{"a.go": "package a\n", "b.go": "// Not a doc.\n\npackage a\n"}, true, ""},
		{"doc_in_second_file", map[string]string{"a.go": "package a\n", "doc.go": "// Package a does a.\npackage a\n"}, true, "Package a does a."},
		{"doc_in_test_file_only", map[string]string{"a.go": "package a\n", "a_test.go": "// Package a does a.\npackage a\n"}, true, ""},
		{"ignored_file_skipped", map[string]string{"a.go": "// Package a does a.\npackage a\n", "gen.go": "//go:build ignore\n\npackage main\n"}, true, "Package a does a."},
		{"command", map[string]string{"main.go": "// Parley runs the server.\npackage main\n"}, true, "Parley runs the server."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, src := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, doc, ok, err := packageDoc(dir)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if ok != tc.wantOK || doc != tc.wantDoc {
				t.Errorf("got %v, %q; want %v, %q", ok, doc, tc.wantOK, tc.wantDoc)
			}
		})
	}
}
