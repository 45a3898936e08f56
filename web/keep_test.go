package web

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestAssetsBuildNoHTMLFromStrings: the console's scripts and pages build
// the DOM with createElement and textContent only. Nothing parses a
// string as HTML or code (innerHTML, outerHTML, insertAdjacentHTML,
// document.write, eval, new Function, string timers), so that a node
// name, label or flow reason can never become markup; and the pages carry
// no inline script or handler, which the CSP would refuse anyway.
func TestAssetsBuildNoHTMLFromStrings(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\s*\(|set(Timeout|Interval)\s*\(\s*['"\x60]|srcdoc|javascript:`)
	inline := regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=|<style`)
	entries, err := assetFS.ReadDir("assets")
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	for _, e := range entries {
		data, err := assetFS.ReadFile("assets/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := sinks.FindString(line); m != "" {
				t.Errorf("assets/%s:%d uses %s: build elements with h() / textContent instead", e.Name(), i+1, m)
			}
			if strings.HasSuffix(e.Name(), ".html") {
				if m := inline.FindString(line); m != "" {
					t.Errorf("assets/%s:%d has inline script or style %q: move it to a file", e.Name(), i+1, m)
				}
			}
		}
		scanned++
	}
	if scanned < 4 {
		t.Fatalf("only %d assets scanned", scanned)
	}
}

// TestStrictCSPOnEveryPage: every console page and asset is served with a
// CSP that allows only the console's own files (no inline script, no
// eval, no framing).
func TestStrictCSPOnEveryPage(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	want := []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"}
	for _, p := range []string{"/", Prefix, Prefix + "login", Prefix + "assets/app.js", Prefix + "assets/login.js", Prefix + "assets/style.css", Prefix + "assets/index.html"} {
		got := c.do("GET", p, "", "", nil)
		csp := got.hdr.Get("Content-Security-Policy")
		for _, w := range want {
			if !strings.Contains(csp, w) {
				t.Errorf("GET %s: CSP %q lacks %s", p, csp, w)
			}
		}
		if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "*") {
			t.Errorf("GET %s: CSP %q allows unsafe sources", p, csp)
		}
		if got.hdr.Get("X-Frame-Options") != "DENY" || got.hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Frame-Options %q, X-Content-Type-Options %q", p, got.hdr.Get("X-Frame-Options"), got.hdr.Get("X-Content-Type-Options"))
		}
	}
}

// TestSecretsComparedInConstantTime: the functions that compare a
// presented secret with a stored one (the admin token hash, an API
// token's hash, the session's CSRF token, a join token's hash) do it
// with crypto/subtle, and nothing in the coordinator compares secrets
// with ==, bytes.Equal or strings.EqualFold, whose time tells how many
// leading bytes matched.
func TestSecretsComparedInConstantTime(t *testing.T) {
	// Where each comparison must be constant-time: file, function.
	must := map[string]string{
		"../coordinator/api/api.go":      "authenticate", // admin token hash, CSRF
		"console.go":                     "logout",       // CSRF
		"../coordinator/state/access.go": "APITokenPrincipal",
		"../coordinator/state/events.go": "secretEqual",
		"../coordinator/store/tx.go":     "CheckToken", // join token hash
		"../coordinator/auth/auth.go":    "VerifyPassword",
		"../coordinator/ca/token.go":     "SecretMatches",
	}
	// A file named above that is gone (moved or renamed) fails the test:
	// a glob over a missing directory would check nothing.
	for path := range must {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %v: update the list of constant-time comparisons", path, err)
		}
	}
	secret := regexp.MustCompile(`(?i)(secret|hash|csrf|token)`)
	fset := token.NewFileSet()
	for _, dir := range []string{"../coordinator/api", ".", "../coordinator/state", "../coordinator/store", "../coordinator/auth", "../coordinator/ca"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		if len(files) == 0 {
			t.Errorf("%s: no Go files: update the directories this test reads", dir)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			wantFn := must[path]
			foundSubtle := false
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.FuncDecl:
					if x.Name.Name == wantFn && x.Body != nil {
						ast.Inspect(x.Body, func(m ast.Node) bool {
							if sel, ok := m.(*ast.SelectorExpr); ok && sel.Sel.Name == "ConstantTimeCompare" {
								foundSubtle = true
							}
							if call, ok := m.(*ast.CallExpr); ok {
								if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "secretEqual" {
									foundSubtle = true
								}
							}
							return true
						})
					}
				case *ast.BinaryExpr:
					if x.Op != token.EQL && x.Op != token.NEQ {
						return true
					}
					for _, side := range []ast.Expr{x.X, x.Y} {
						if isSecretExpr(side, secret) && !isEmptyOrNil(x.X) && !isEmptyOrNil(x.Y) {
							t.Errorf("%s: %s compares a secret with %s: use subtle.ConstantTimeCompare", fset.Position(x.Pos()), exprString(side), x.Op)
						}
					}
				case *ast.CallExpr:
					if sel, ok := x.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Equal" || sel.Sel.Name == "EqualFold" || sel.Sel.Name == "Compare") {
						if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "bytes" || pkg.Name == "strings") {
							for _, a := range x.Args {
								if isSecretExpr(a, secret) {
									t.Errorf("%s: %s.%s on %s: use subtle.ConstantTimeCompare", fset.Position(x.Pos()), pkg.Name, sel.Sel.Name, exprString(a))
								}
							}
						}
					}
				}
				return true
			})
			if wantFn != "" && !foundSubtle {
				t.Errorf("%s: %s does not compare with subtle.ConstantTimeCompare", path, wantFn)
			}
		}
	}
}

// isSecretExpr reports whether e names a secret or its hash (an
// identifier or field like SecretHash, CSRF, AdminTokenHash), not a
// length, a name or a kind.
func isSecretExpr(e ast.Expr, secret *regexp.Regexp) bool {
	var name string
	switch x := e.(type) {
	case *ast.Ident:
		name = x.Name
	case *ast.SelectorExpr:
		name = x.Sel.Name
	case *ast.CallExpr:
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "HashSecret" || sel.Sel.Name == "adminHash") {
			return true
		}
		if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "adminHash" {
			return true
		}
		return false
	default:
		return false
	}
	lower := strings.ToLower(name)
	if strings.HasSuffix(lower, "len") || strings.HasSuffix(lower, "length") {
		return false // a length is no secret
	}
	switch lower {
	case "tokenformat", "tokenversion", "csrfheader", "token", "tok":
		// Names of formats and of parsed token structs, not secrets; the
		// structs are compared field by field where it matters.
		return false
	}
	return secret.MatchString(name)
}

func isEmptyOrNil(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name == "nil"
	case *ast.BasicLit:
		return x.Value == `""`
	}
	return false
}

func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	case *ast.CallExpr:
		return exprString(x.Fun) + "(...)"
	}
	return "expression"
}
