package deptest

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A package's doc comment says who may import it in exactly one sentence
// of one of these forms (package paths relative to the module root):
//
//	Anything may import it.
//	Only tests import it.
//	Only package a imports it.
//	Only packages a, b and c import it.
//	Only packages a and b, and tests, import it.
//	Only packages a and b, and the tests of c and d, import it.
//
// A remark in parentheses after a package path is allowed ("cli (to
// create users)"). The package's own tests may always import it; "tests"
// means the tests of any package; a package listed may import it from
// code or tests.
const ruleFormats = `"Anything may import it.", "Only tests import it.", or "Only package(s) a, b and c[, and tests,| , and the tests of d and e,] import(s) it."`

var (
	// ruleSentence finds the rule; its group is who may import.
	ruleSentence     = regexp.MustCompile(`\bOnly ([^.;:]*?) imports? it\b`)
	anythingSentence = regexp.MustCompile(`\bAnything may import it\.`)
	// looseSentence finds other sentences about who imports the package,
	// which the rule must replace.
	looseSentence = regexp.MustCompile(`(?i)\b(may|should|must) import\b|\bimports? this package\b|\bnothing else should\b`)
	parenthetical = regexp.MustCompile(`\s*\([^()]*\)`)
	ruleWho       = regexp.MustCompile(`^packages? (.+?)(?:, and (tests|the tests of (.+)),)?$`)
	pkgPath       = regexp.MustCompile(`^[a-z][a-z0-9_-]*(/[a-z][a-z0-9_-]*)*$`)
)

// rule is who may import a package, as its doc comment says.
type rule struct {
	text      string   // the sentence, for messages
	anything  bool     // "Anything may import it."
	testsOnly bool     // "Only tests import it."
	pkgs      []string // may import it from code and tests
	anyTest   bool     // ", and tests,": the tests of any package too
	testPkgs  []string // ", and the tests of ...,": their tests too
}

// parseRule finds the import rule in a package doc comment.
func parseRule(doc string) (rule, error) {
	doc = strings.Join(strings.Fields(doc), " ")
	if m := looseSentence.FindString(anythingSentence.ReplaceAllString(doc, "")); m != "" {
		return rule{}, fmt.Errorf("says who imports it (%q) in a form the import check does not read: write %s", m, ruleFormats)
	}
	onlys := ruleSentence.FindAllStringSubmatch(doc, -1)
	anys := anythingSentence.FindAllString(doc, -1)
	switch {
	case len(onlys)+len(anys) == 0:
		return rule{}, fmt.Errorf("does not say who may import it: add %s", ruleFormats)
	case len(onlys)+len(anys) > 1:
		return rule{}, fmt.Errorf("says who may import it more than once: keep one of %q", append(anys, firsts(onlys)...))
	case len(anys) == 1:
		return rule{text: anys[0], anything: true}, nil
	}
	r := rule{text: onlys[0][0] + "."}
	who := parenthetical.ReplaceAllString(onlys[0][1], "")
	if who == "tests" {
		r.testsOnly = true
		return r, nil
	}
	m := ruleWho.FindStringSubmatch(who)
	if m == nil {
		return rule{}, fmt.Errorf("rule %q: write %s", r.text, ruleFormats)
	}
	var err error
	if r.pkgs, err = splitList(m[1]); err != nil {
		return rule{}, fmt.Errorf("rule %q: %w", r.text, err)
	}
	switch {
	case m[2] == "tests":
		r.anyTest = true
	case m[3] != "":
		if r.testPkgs, err = splitList(m[3]); err != nil {
			return rule{}, fmt.Errorf("rule %q: %w", r.text, err)
		}
	}
	return r, nil
}

func firsts(ms [][]string) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m[0])
	}
	return out
}

// splitList splits "a, b and c" into package paths.
func splitList(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(strings.ReplaceAll(s, " and ", ", "), ", ") {
		p = strings.TrimSpace(p)
		if !pkgPath.MatchString(p) {
			return nil, fmt.Errorf("%q is not a package path relative to the module root", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// importer is one package that imports another, from its code or only
// from its tests.
type importer struct {
	pkg  string
	test bool
}

// violations lists how the importers of pkg break its rule r, and the
// packages r names that do not exist or do not import pkg (a stale rule).
func violations(pkg string, r rule, importers []importer, known map[string]bool) []string {
	if r.anything {
		return nil
	}
	var out []string
	allowed := map[string]bool{pkg: true}
	for _, p := range r.pkgs {
		allowed[p] = true
	}
	testAllowed := map[string]bool{}
	for _, p := range r.testPkgs {
		testAllowed[p] = true
	}
	imports := map[string]bool{}
	for _, im := range importers {
		imports[im.pkg] = true
		switch {
		case im.test && (r.anyTest || r.testsOnly || allowed[im.pkg] || testAllowed[im.pkg]):
		case !im.test && !r.testsOnly && allowed[im.pkg]:
		case im.test:
			out = append(out, fmt.Sprintf("package %s: the tests of %s import it, which its doc comment forbids (%q): remove the import or change the rule", pkg, im.pkg, r.text))
		default:
			out = append(out, fmt.Sprintf("package %s: %s imports it, which its doc comment forbids (%q): remove the import or change the rule", pkg, im.pkg, r.text))
		}
	}
	for _, p := range append(slices.Clone(r.pkgs), r.testPkgs...) {
		switch {
		case !known[p]:
			out = append(out, fmt.Sprintf("package %s: its rule %q names %s, which is no package of the module", pkg, r.text, p))
		case !imports[p]:
			out = append(out, fmt.Sprintf("package %s: its rule %q names %s, which does not import it: drop it from the rule", pkg, r.text, p))
		}
	}
	return out
}

// listed is one package of `go list -json`.
type listed struct {
	ImportPath   string
	Dir          string
	Name         string
	GoFiles      []string
	CgoFiles     []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// modulePackages lists the module's packages with their imports, keyed by
// path relative to the module root.
func modulePackages(t *testing.T) map[string]listed {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Dir,Name,GoFiles,CgoFiles,Imports,TestImports,XTestImports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
	return pkgs
}

// rel returns an import path of the module relative to its root, or ""
// for a path outside it.
func rel(path string) string {
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r
	}
	return ""
}

// importGraph returns the importers of each package of the module. The
// imports of a test-support package (one whose rule is "Only tests import
// it", such as coordinator/coordtest) count as test imports: only tests
// reach them.
func importGraph(pkgs map[string]listed, testSupport map[string]bool) map[string][]importer {
	g := map[string][]importer{}
	for name, p := range pkgs {
		seen := map[string]bool{}
		for _, imp := range p.Imports {
			if r := rel(imp); r != "" && !seen[r] {
				seen[r] = true
				g[r] = append(g[r], importer{pkg: name, test: testSupport[name]})
			}
		}
		for _, imp := range append(slices.Clone(p.TestImports), p.XTestImports...) {
			if r := rel(imp); r != "" && r != name && !seen[r] {
				seen[r] = true
				g[r] = append(g[r], importer{pkg: name, test: true})
			}
		}
	}
	return g
}

// packageDoc returns the doc comments of the package in dir, from all its
// non-test files (every platform's).
func packageDoc(dir string) (string, error) {
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			if f.Doc != nil {
				b.WriteString(f.Doc.Text())
				b.WriteString("\n")
			}
		}
	}
	return b.String(), nil
}

// TestImportRules checks every package doc comment's import rule (see
// ruleFormats) against the module's real import graph, tests included.
func TestImportRules(t *testing.T) {
	pkgs := modulePackages(t)
	known := map[string]bool{}
	rules := map[string]rule{}
	testSupport := map[string]bool{}
	for name, p := range pkgs {
		known[name] = true
		if p.Name == "main" || len(p.GoFiles)+len(p.CgoFiles) == 0 {
			continue // a command, or only tests: nothing can import it
		}
		doc, err := packageDoc(p.Dir)
		if err != nil {
			t.Errorf("package %s: %v", name, err)
			continue
		}
		r, err := parseRule(doc)
		if err != nil {
			t.Errorf("package %s: its doc comment %v", name, err)
			continue
		}
		rules[name] = r
		testSupport[name] = r.testsOnly
	}
	graph := importGraph(pkgs, testSupport)
	checked := 0
	for name, r := range rules {
		checked++
		for _, v := range violations(name, r, graph[name], known) {
			t.Error(v)
		}
	}
	if checked < 20 {
		t.Errorf("checked the import rules of %d packages; the module has more: is go list working?", checked)
	}
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want rule
		err  string
	}{
		{doc: "Package x does y.\n\nAnything may import it.", want: rule{anything: true}},
		{doc: "Package x does y. Only tests\nimport it.", want: rule{testsOnly: true}},
		{doc: "Only package cmd/latch imports it.", want: rule{pkgs: []string{"cmd/latch"}}},
		{doc: "Only packages cli (to create users), coordinator/api\nand web import it.", want: rule{pkgs: []string{"cli", "coordinator/api", "web"}}},
		{doc: "Only packages a and b, and tests, import it: it holds a key.", want: rule{pkgs: []string{"a", "b"}, anyTest: true}},
		{doc: "Only package a, and the tests of b/c, d and e, import it.", want: rule{pkgs: []string{"a"}, testPkgs: []string{"b/c", "d", "e"}}},
		{doc: "Package x does y.", err: "does not say who may import it"},
		{doc: "The node agent imports this package; nothing else should.", err: "in a form the import check does not read"},
		{doc: "Only the coordinator may import it.", err: "in a form the import check does not read"},
		{doc: "Only the coordinator imports it.", err: "write"},
		{doc: "Only tests import it. Anything may import it.", err: "more than once"},
		{doc: "Only package a imports it; b may import it too.", err: "in a form the import check does not read"},
		{doc: "Only packages A and b import it.", err: "not a package path"},
	} {
		got, err := parseRule(tc.doc)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseRule(%q) = %+v, %v; want an error with %q", tc.doc, got, err, tc.err)
			}
			continue
		}
		got.text = ""
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseRule(%q) = %+v, %v; want %+v", tc.doc, got, err, tc.want)
		}
	}
}

// TestViolations: the check refuses an import the rule does not allow,
// from code or from tests, and a rule naming a package that does not
// import the package.
func TestViolations(t *testing.T) {
	known := map[string]bool{"ca": true, "api": true, "cli": true, "agent": true, "web": true}
	r := rule{text: "Only packages api and cli, and the tests of web, import it.", pkgs: []string{"api", "cli"}, testPkgs: []string{"web"}}
	ok := []importer{{pkg: "api"}, {pkg: "cli", test: true}, {pkg: "web", test: true}, {pkg: "ca", test: true}}
	if v := violations("ca", r, ok, known); len(v) > 0 {
		t.Errorf("allowed imports reported: %q", v)
	}
	for _, tc := range []struct {
		name      string
		importers []importer
		want      string
	}{
		{"code of a package not listed", append(slices.Clone(ok), importer{pkg: "agent"}), "agent imports it, which its doc comment forbids"},
		{"tests of a package not listed", append(slices.Clone(ok), importer{pkg: "agent", test: true}), "the tests of agent import it"},
		{"code of a package whose tests are listed", append(slices.Clone(ok[:2]), importer{pkg: "web"}), "web imports it"},
		{"a listed package that does not import it", ok[1:], "names api, which does not import it"},
	} {
		v := violations("ca", r, tc.importers, known)
		if len(v) != 1 || !strings.Contains(v[0], tc.want) {
			t.Errorf("%s: got %q, want one violation with %q", tc.name, v, tc.want)
		}
	}
	if v := violations("x", rule{text: "Only tests import it.", testsOnly: true}, []importer{{pkg: "a", test: true}, {pkg: "b"}}, known); len(v) != 1 || !strings.Contains(v[0], "b imports it") {
		t.Errorf("tests only, imported by code: %q", v)
	}
	if v := violations("x", rule{text: "r", pkgs: []string{"gone"}}, nil, known); len(v) != 1 || !strings.Contains(v[0], "no package of the module") {
		t.Errorf("a rule naming a missing package: %q", v)
	}
}
