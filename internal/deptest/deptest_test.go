// Package deptest checks the layout rules of the design: pure packages
// import no echo, netlink, BPF or WireGuard code, every package says what
// it is for in a doc comment, and who may import it in one sentence
// (imports_test.go) that the module's real import graph, tests included,
// obeys.
package deptest

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/latchnet/latch"

// pure packages compute without touching the host.
var pure = []string{
	"inventory",
	"policy",
	"netmap",
	"view",
	"internal/strictyaml",
	"node/enforce",
	"node/enforce/userspace",
	"coordinator/auth",
	"suggest",
	"node/flowlog",
	"coordinator/spiffemap",
	"grant",
	"coordinator/ratelimit",
	"adminapi",
	"adminapi/client",
}

var forbidden = []string{
	"github.com/labstack/echo",
	"github.com/vishvananda/netlink",
	"github.com/cilium/ebpf",
	"golang.zx2c4.com/wireguard",
	"golang.zx2c4.com/wireguard/wgctrl",
	"github.com/spiffe/go-spiffe",
}

func TestPurePackagesImportNoDataPlane(t *testing.T) {
	for _, p := range pure {
		out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", module+"/"+p).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", p, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var d struct{ ImportPath string }
			if err := dec.Decode(&d); err != nil {
				t.Fatal(err)
			}
			for _, f := range forbidden {
				if d.ImportPath == f || strings.HasPrefix(d.ImportPath, f+"/") {
					t.Errorf("pure package %s depends on %s", p, d.ImportPath)
				}
			}
		}
	}
}

// TestAdminAPIImportsNoCoordinator: the admin API's types and its client
// stand alone (as package wire does for nodes), so that no internal record
// reaches them and a program automating Latch needs nothing else.
func TestAdminAPIImportsNoCoordinator(t *testing.T) {
	for _, p := range []string{"adminapi", "adminapi/client"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+p).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", p, err)
		}
		for _, d := range strings.Fields(string(out)) {
			if strings.HasPrefix(d, module+"/") && !strings.HasPrefix(d, module+"/adminapi") {
				t.Errorf("%s depends on %s", p, d)
			}
		}
	}
}

func TestEveryPackageHasDoc(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for pname, pkg := range pkgs {
			documented := false
			for _, f := range pkg.Files {
				if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
					documented = true
					// "Package x ..." names the package it documents.
					if w := strings.Fields(f.Doc.Text()); len(w) > 1 && w[0] == "Package" && w[1] != pname {
						t.Errorf("the doc comment of package %s in %s says \"Package %s\"", pname, path, w[1])
					}
				}
			}
			if !documented {
				t.Errorf("package %s in %s has no doc comment saying what it is for and who may import it", pname, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
