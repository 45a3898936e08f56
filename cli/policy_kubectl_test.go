package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator"
	"github.com/latchnet/latch/internal/syncbuf"
)

// testCoordinator is the real coordinator (coordinator.Run, as the
// coordinator command runs it), on loopback, started by
// startTestCoordinator; the CLI's tests call it with the admin token it
// writes.
type testCoordinator struct {
	dir  string // its data directory
	addr string // where it listens
	log  *syncbuf.Buffer
}

// startTestCoordinator runs the real coordinator on loopback until the
// test ends.
func startTestCoordinator(t *testing.T) *testCoordinator {
	t.Helper()
	tc := &testCoordinator{dir: t.TempDir(), log: &syncbuf.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- coordinator.Run(ctx, coordinator.Config{Listen: "127.0.0.1:0", DataDir: tc.dir, TrustDomain: "example.test",
			Baseline: "deny", SVIDTTL: time.Hour, Keepalive: 10 * time.Second, Log: slog.New(slog.NewTextHandler(tc.log, nil)),
			OnListen: func(api, _ net.Addr) { listening <- api }})
	}()
	select {
	case a := <-listening:
		tc.addr = a.String()
	case err := <-done:
		cancel()
		t.Fatalf("the coordinator did not start: %v\n%s", err, tc.log.String())
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		t.Fatalf("the coordinator did not listen within 60s:\n%s", tc.log.String())
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return tc
}

// latch runs latch with the admin flags of the coordinator.
func (tc *testCoordinator) latch(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	args = append(args, "--coordinator", "https://"+tc.addr, "--token-file", filepath.Join(tc.dir, "admin.token"))
	code = Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPolicyRecipesApply: each public recipe (written for kubectl, most
// without a namespace) validates, shows as new in diff, applies unchanged
// with -n, and then diff shows no change.
func TestPolicyRecipesApply(t *testing.T) {
	latch := startTestCoordinator(t).latch
	files, _ := filepath.Glob("../policy/testdata/recipes/*.yaml")
	if len(files) != 15 {
		t.Fatalf("%d recipes, want 15", len(files))
	}
	noNamespace := 0
	for _, f := range files {
		if out, errOut, code := run(t, "policy", "validate", "-n", "default", "-f", f); code != 0 || out != "1 policies are valid\n" {
			t.Errorf("validate -n default %s: %d %s%s", f, code, out, errOut)
		}
		if out, errOut, code := latch("policy", "diff", "-n", "default", "-f", f); code != 1 || !strings.Contains(out, "+++ merged/networking.k8s.io.v1.NetworkPolicy.default.") {
			t.Errorf("diff before apply %s: %d %s%s; want exit 1 and a diff", f, code, out, errOut)
		}
		if out, errOut, code := latch("policy", "apply", "-n", "default", "-f", f); code != 0 || !strings.HasPrefix(out, "applied 1 policies: default/") {
			t.Errorf("apply -n default %s: %d %s%s", f, code, out, errOut)
		}
		if out, errOut, code := latch("policy", "diff", "-n", "default", "-f", f); code != 0 || out != "" {
			t.Errorf("diff after apply %s: %d %s%s; want exit 0 and no output", f, code, out, errOut)
		}
		// In another namespace: the recipes without a namespace go
		// there; those that name "default" conflict, as with kubectl.
		out, errOut, code := latch("policy", "apply", "-n", "shop", "-f", f)
		data, _ := os.ReadFile(f)
		if regexp.MustCompile(`(?m)^  namespace: default$`).Match(data) {
			if code != 1 || !strings.Contains(errOut, `the namespace from the provided object "default" does not match the namespace "shop". You must pass '--namespace=default' to perform this operation.`) {
				t.Errorf("apply -n shop %s: %d %s%s; want kubectl's namespace conflict", f, code, out, errOut)
			}
			continue
		}
		noNamespace++
		if code != 0 || !strings.HasPrefix(out, "applied 1 policies: shop/") {
			t.Errorf("apply -n shop %s: %d %s%s", f, code, out, errOut)
		}
	}
	if noNamespace != 9 {
		t.Errorf("%d recipes without a namespace, want 9", noNamespace)
	}
	out, errOut, code := latch("policy", "get", "-n", "shop")
	if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 1+8 { // 11 and 11-2 are one policy
		t.Errorf("get -n shop: %d\n%s%s; want 8 policies", code, out, errOut)
	}
}

const (
	webPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - ports: [{port: 443}]
`
	dbPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: prod
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`
)

// TestPolicyKubectlHabits: -n and the file's namespace, get in every
// format and back through apply, delete, and diff's exit codes.
func TestPolicyKubectlHabits(t *testing.T) {
	latch := startTestCoordinator(t).latch
	web := writeFile(t, "web.yaml", webPolicy)
	both := writeFile(t, "both.yaml", webPolicy+"---\n"+dbPolicy)

	// The file's namespace wins over the default; -n given and different
	// is kubectl's error, naming the document and line.
	if out, errOut, code := latch("policy", "apply", "-n", "dev", "-f", both); code != 1 ||
		!strings.Contains(errOut, both+`: document 2 (name "db", line 15): metadata.namespace: the namespace from the provided object "prod" does not match the namespace "dev". You must pass '--namespace=prod' to perform this operation.`) {
		t.Fatalf("apply -n dev with a policy in prod: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "apply", "-f", both); code != 0 || out != "applied 2 policies: default/web, prod/db\n" {
		t.Fatalf("apply: %d %s%s", code, out, errOut)
	}

	// get: a table per namespace or of all; one policy or a List as YAML
	// or JSON, which apply takes back unchanged.
	out, errOut, code := latch("policy", "get")
	if code != 0 || !regexp.MustCompile(`^NAME\s+POD-SELECTOR\s+POLICY-TYPES\s+APPLIED\nweb\s+app=web\s+Ingress\s+\S+ ago\n$`).MatchString(out) {
		t.Errorf("get:\n%s%s", out, errOut)
	}
	out, errOut, code = latch("policy", "get", "-A")
	if code != 0 || !regexp.MustCompile(`^NAMESPACE\s+NAME\s+POD-SELECTOR\s+POLICY-TYPES\s+APPLIED\ndefault\s+web\s+app=web\s+Ingress\s+\S+ ago\nprod\s+db\s+<none>\s+Ingress,Egress\s+\S+ ago\n$`).MatchString(out) {
		t.Errorf("get -A:\n%s%s", out, errOut)
	}
	if out, errOut, code := latch("policy", "get", "-n", "empty"); code != 0 || out != "" || errOut != "No policies found in namespace empty.\n" {
		t.Errorf("get -n empty: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "get", "nope", "-n", "prod"); code != 1 ||
		!strings.Contains(errOut, `policy "nope" not found in namespace "prod": list them with latch policy get -n prod, or latch policy get -A for every namespace`) {
		t.Errorf("get a missing policy: %d %s%s", code, out, errOut)
	}
	out, errOut, code = latch("policy", "get", "web", "-o", "yaml")
	if code != 0 || !strings.HasPrefix(out, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n") || !strings.Contains(out, "namespace: default") {
		t.Errorf("get web -o yaml: %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"get", "web", "-o", "yaml"},
		{"get", "db", "-n", "prod", "-o", "json"},
		{"get", "-A", "-o", "yaml"},
		{"get", "-A", "-o", "json"},
		{"get", "-n", "prod", "-o", "yaml"},
	} {
		out, errOut, code := latch(append([]string{"policy"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, errOut)
		}
		if len(args) >= 3 && args[1] == "-A" && !strings.Contains(out, "List") {
			t.Errorf("%v: not a List:\n%s", args, out)
		}
		f := writeFile(t, "got.yaml", out)
		if out, errOut, code := latch("policy", "diff", "-f", f); code != 0 || out != "" {
			t.Errorf("diff of the output of %v: %d %s%s; want no change", args, code, out, errOut)
		}
		// With -n: the file's namespaces agree or the objects name one.
		if out, errOut, code := latch("policy", "apply", "-f", f); code != 0 || !strings.HasPrefix(out, "applied ") {
			t.Errorf("apply the output of %v: %d %s%s", args, code, out, errOut)
		}
	}
	if out, errOut, code := latch("policy", "get", "-A", "-o", "yaml", "-n", "prod"); code != 1 || !strings.Contains(errOut, "not both") {
		t.Errorf("get -A -n: %d %s%s", code, out, errOut)
	}

	// diff: 1 and a unified diff per changed policy; 0 when nothing
	// would change; 2 on an error.
	changed := writeFile(t, "changed.yaml", strings.Replace(webPolicy, "443", "8443", 1)+"---\n"+dbPolicy)
	out, errOut, code = latch("policy", "diff", "-f", changed)
	want := `--- live/networking.k8s.io.v1.NetworkPolicy.default.web
+++ merged/networking.k8s.io.v1.NetworkPolicy.default.web
@@ -6,7 +6,7 @@
 spec:
   ingress:
   - ports:
-    - port: 443
+    - port: 8443
   podSelector:
     matchLabels:
       app: web
`
	if code != 1 || out != want {
		t.Errorf("diff of a change: exit %d, stderr %q, out:\n%s\nwant:\n%s", code, errOut, out, want)
	}
	if out, errOut, code := latch("policy", "diff", "-f", both); code != 0 || out != "" || errOut != "" {
		t.Errorf("diff without a change: %d %q %q", code, out, errOut)
	}
	for _, args := range [][]string{
		{"policy", "diff", "-f", writeFile(t, "bad.yaml", strings.Replace(webPolicy, "443", "0", 1))},
		{"policy", "diff", "-f", both, "-n", "dev"},
		{"policy", "diff", "-f", filepath.Join(t.TempDir(), "missing.yaml")},
		{"policy", "diff", "-f", writeFile(t, "empty.yaml", "apiVersion: v1\nkind: List\nitems: []\n")},
		{"policy", "diff"},
		{"policy", "diff", "-f", both, "extra"},
		{"policy", "diff", "-f", both, "--no-such-flag"},
	} {
		if out, errOut, code := latch(args...); code != 2 || !strings.HasPrefix(errOut, "latch: ") {
			t.Errorf("%v: exit %d %s%s; want 2 and an error", args, code, out, errOut)
		}
	}

	// delete: by name in -n's namespace, as NAMESPACE/NAME, or what a
	// file names; a missing policy says which and how to list them.
	if out, errOut, code := latch("policy", "delete", "web"); code != 0 || out != "policy default/web deleted\n" {
		t.Errorf("delete web: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "delete", "web"); code != 1 ||
		errOut != "latch: policy \"web\" not found in namespace \"default\": list them with latch policy get -n default, or latch policy get -A for every namespace\n" {
		t.Errorf("delete a missing policy: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "delete", "web", "--ignore-not-found"); code != 0 || out != "" {
		t.Errorf("delete --ignore-not-found: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "delete", "prod/db", "-n", "dev"); code != 1 || !strings.Contains(errOut, "give one namespace") {
		t.Errorf("delete prod/db -n dev: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "delete", "-f", both); code != 1 || out != "policy prod/db deleted\n" ||
		!strings.Contains(errOut, `policy "web" not found in namespace "default"`) {
		t.Errorf("delete -f with one policy gone: %d %s%s", code, out, errOut)
	}
	latch("policy", "apply", "-f", web, "-n", "shop")
	if out, errOut, code := latch("policy", "delete", "shop/web"); code != 0 || out != "policy shop/web deleted\n" {
		t.Errorf("delete shop/web: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := latch("policy", "get", "-A", "-o", "json"); code != 0 || !strings.Contains(out, `"items": []`) {
		t.Errorf("get -A -o json after deleting all: %d %s%s", code, out, errOut)
	}
}

// TestEvalNamespace: latch policy eval reads its policy files with the
// same namespace rules, offline.
func TestEvalNamespace(t *testing.T) {
	pol := writeFile(t, "web.yaml", strings.Replace(webPolicy, "app: web", "app: db", 1))
	base := []string{"policy", "eval", "--inventory", "../examples/inventory.yaml", "--policy", pol, "-o", "json"}
	if out, errOut, code := run(t, append(base, "-n", "prod")...); code != 0 || !strings.Contains(out, `"results"`) {
		t.Errorf("eval -n prod: %d %s%s", code, out, errOut)
	}
	inProd := writeFile(t, "prod.yaml", dbPolicy)
	base[5] = inProd
	if out, errOut, code := run(t, base...); code != 0 {
		t.Errorf("eval of a policy in prod: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := run(t, append(base, "-n", "ops")...); code != 1 || !strings.Contains(errOut, "You must pass '--namespace=prod'") {
		t.Errorf("eval -n ops of a policy in prod: %d %s%s", code, out, errOut)
	}
}
