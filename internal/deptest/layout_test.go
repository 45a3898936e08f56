package deptest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayoutTableListsEveryPackage: docs/development.md's layout table
// names every package of the module, so a newcomer finds each one.
func TestLayoutTableListsEveryPackage(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "development.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		path, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		listed[strings.TrimSuffix(path, "/")] = true
	}
	for name := range modulePackages(t) {
		if !listed[name] {
			t.Errorf("docs/development.md's layout table does not list package %s: add a row saying what it is for", name)
		}
	}
}
