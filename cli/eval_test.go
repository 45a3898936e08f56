package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cli -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, d)
	}
}

// The example files are the ones docs/policy.md shows; the golden outputs were
// checked by hand against the policies (see the comments in
// examples/policy.yaml).
func TestEvalGolden(t *testing.T) {
	for _, f := range []struct{ name, output, baseline string }{
		{"eval-table.txt", "table", "deny"},
		{"eval.json", "json", "deny"},
		{"eval-allow-table.txt", "table", "allow"},
	} {
		out, errOut, code := run(t, "policy", "eval", "--inventory", "../examples/inventory.yaml",
			"--policy", "../examples/policy.yaml", "--output", f.output, "--baseline", f.baseline)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		golden(t, f.name, out)
	}
}

// TestEvalSitesGolden: sites get rows and columns with the CIDR-level
// verdict, and JSON a siteResults list. The outputs were checked by hand
// against the comments of examples/sites-policy.yaml.
func TestEvalSitesGolden(t *testing.T) {
	for _, f := range []struct{ name, output, baseline string }{
		{"eval-sites-table.txt", "table", "deny"},
		{"eval-sites.json", "json", "deny"},
		{"eval-sites-allow-table.txt", "table", "allow"},
	} {
		out, errOut, code := run(t, "policy", "eval", "--inventory", "../examples/sites-inventory.yaml",
			"--policy", "../examples/sites-policy.yaml", "--output", f.output, "--baseline", f.baseline)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		golden(t, f.name, out)
	}
}

// TestEvalJSONShape checks the documented JSON contract: results sorted by
// from, to, protocol, port, with the fields the issue names.
func TestEvalJSONShape(t *testing.T) {
	out, errOut, code := run(t, "policy", "eval", "--inventory", "../examples/inventory.yaml",
		"--policy", "../examples/policy.yaml", "-o", "json")
	if code != 0 {
		t.Fatal(errOut)
	}
	var doc struct {
		Results []struct {
			From, To, Protocol string
			Port               int
			Allowed            *bool
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) == 0 {
		t.Fatal("no results")
	}
	allowed := map[string]bool{}
	for i, r := range doc.Results {
		if r.From == "" || r.To == "" || r.Protocol == "" || r.Port == 0 || r.Allowed == nil {
			t.Fatalf("result %d lacks a field: %+v", i, r)
		}
		if i > 0 {
			p := doc.Results[i-1]
			if [3]string{p.From, p.To, p.Protocol} != [3]string{r.From, r.To, r.Protocol} {
				if p.From+"\x00"+p.To+"\x00"+p.Protocol > r.From+"\x00"+r.To+"\x00"+r.Protocol {
					t.Fatalf("results not sorted at %d", i)
				}
			} else if p.Port >= r.Port {
				t.Fatalf("results not sorted by port at %d", i)
			}
		}
		if *r.Allowed {
			allowed[fmt.Sprintf("%s -> %s %d", r.From, r.To, r.Port)] = true
		}
	}
	want := map[string]bool{
		"corp/laptop -> prod/web 443":     true,
		"prod/web -> prod/api 8080":       true,
		"prod/api -> prod/db 5432":        true,
		"ops/prometheus -> prod/api 9090": true,
		"ops/prometheus -> prod/db 9187":  true,
	}
	if d := cmp.Diff(want, allowed); d != "" {
		t.Errorf("allowed flows (-want +got):\n%s", d)
	}
}

func TestEvalErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: prod}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 80, endPort: 70}]\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "eval", "--policy", "../examples/policy.yaml"}, "no inventory"},
		{[]string{"policy", "eval", "--inventory", "../examples/inventory.yaml"}, "no policy file"},
		{[]string{"policy", "eval", "--inventory", "missing.yaml", "--policy", "x"}, "reading inventory"},
		{[]string{"policy", "eval", "--inventory", "../examples/inventory.yaml", "--policy", "../examples/policy.yaml", "--baseline", "maybe"}, `must be "deny"`},
		{[]string{"policy", "eval", "--inventory", "../examples/inventory.yaml", "--policy", "../examples/policy.yaml", "-o", "xml"}, "must be table or json"},
		{[]string{"policy", "eval", "--inventory", "../examples/inventory.yaml", "--policy", bad}, `document 1 (name "x", line 7): spec.ingress[0].ports[0].endPort: 70 is below port 80`},
	} {
		_, errOut, code := run(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure containing %q", c.args, code, errOut, c.want)
		}
	}
}
