package deptest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testOnly are the packages that exist for tests ("Only tests import
// it"): only _test.go files import them, or another of them.
var testOnly = []string{
	"coordinator/coordtest",
	"internal/spiffetest",
	"internal/tracetest",
}

func TestTestSupportOnlyInTests(t *testing.T) {
	only := map[string]bool{}
	for _, p := range testOnly {
		only[module+"/"+p] = true
	}
	root := filepath.Join("..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		if only[module+"/"+filepath.ToSlash(rel)] {
			return nil // one test-support package may use another
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); only[p] {
				t.Errorf("%s imports %s, which only tests may import: move the code that needs it into a _test.go file", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d files checked: the walk missed the module", checked)
	}
}
