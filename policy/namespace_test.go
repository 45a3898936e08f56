package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/policy"
)

const (
	noNamespace = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector: {}
`
	inProd = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: prod
spec:
  podSelector: {}
`
)

// TestNamespaceRules checks kubectl's rules: a policy without a namespace
// goes to the default namespace (-n), a namespace in the file wins unless
// -n was given explicitly and differs (then kubectl's error), and List and
// NetworkPolicyList documents hold policies as items.
func TestNamespaceRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts policy.ParseOptions
		doc  string
		want []string // keys read, in order
		// errs are the FieldErrors (Field, Line, a substring of Reason)
		// expected instead.
		errs []wantErr
	}{{
		name: "no namespace, no default: required",
		doc:  noNamespace,
		errs: []wantErr{{"metadata.namespace", 3, "required"}},
	}, {
		name: "no namespace takes the default",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc:  noNamespace,
		want: []string{"default/web"},
	}, {
		name: "no namespace takes an explicit -n",
		opts: policy.ParseOptions{DefaultNamespace: "shop", EnforceNamespace: true},
		doc:  noNamespace,
		want: []string{"shop/web"},
	}, {
		name: "the file's namespace wins over the default",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc:  inProd,
		want: []string{"prod/db"},
	}, {
		name: "the file's namespace agrees with an explicit -n",
		opts: policy.ParseOptions{DefaultNamespace: "prod", EnforceNamespace: true},
		doc:  inProd,
		want: []string{"prod/db"},
	}, {
		name: "the file's namespace conflicts with an explicit -n",
		opts: policy.ParseOptions{DefaultNamespace: "dev", EnforceNamespace: true},
		doc:  noNamespace + "---\n" + inProd,
		errs: []wantErr{{"metadata.namespace", 12, `the namespace from the provided object "prod" does not match the namespace "dev". You must pass '--namespace=prod' to perform this operation.`}},
	}, {
		name: "List",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc: `apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: a}
  spec: {podSelector: {}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: b, namespace: prod}
  spec: {podSelector: {}}
`,
		want: []string{"default/a", "prod/b"},
	}, {
		name: "NetworkPolicyList, items without their type",
		opts: policy.ParseOptions{DefaultNamespace: "dev", EnforceNamespace: true},
		doc: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
items:
- metadata: {name: a}
  spec: {podSelector: {}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: b, namespace: dev}
  spec: {podSelector: {}}
`,
		want: []string{"dev/a", "dev/b"},
	}, {
		name: "empty List",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc:  "apiVersion: v1\nkind: List\nitems: []\n",
	}, {
		name: "List without items",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc:  "apiVersion: v1\nkind: List\n",
	}, {
		name: "errors in items name the item's field and line",
		opts: policy.ParseOptions{DefaultNamespace: "dev", EnforceNamespace: true},
		doc: inProd + `---
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: ok}
  spec: {podSelector: {}}
- apiVersion: v1
  kind: Service
  metadata: {name: svc}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    name: bad
    namespace: prod
  spec:
    podSelector: {}
    ingress:
    - ports:
      - protocol: ICMP
    egres: []
`,
		errs: []wantErr{
			{"metadata.namespace", 5, `does not match the namespace "dev"`},
			{"items[1].apiVersion", 16, `must be "networking.k8s.io/v1"`},
			{"items[1].kind", 17, `a List here holds only NetworkPolicies`},
			{"items[2].spec.egres", 29, "unknown field"},
			{"items[2].metadata.namespace", 23, `You must pass '--namespace=prod'`},
			{"items[2].spec.ingress[0].ports[0].protocol", 28, "ICMP"},
		},
	}, {
		name: "a List's own fields are checked",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc:  "apiVersion: networking.k8s.io/v1\nkind: List\nitem: []\n",
		errs: []wantErr{
			{"item", 3, "unknown field"},
			{"apiVersion", 1, `must be "v1" for a List`},
		},
	}, {
		name: "duplicates across a List and a document",
		opts: policy.ParseOptions{DefaultNamespace: "default"},
		doc:  noNamespace + "---\napiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(noNamespace), "\n", "\n  ") + "\n",
		errs: []wantErr{{"items[0].metadata.name", 11, "duplicate name"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := policy.ParseFilesWith(tc.opts, policy.File{Name: "f.yaml", Data: []byte(tc.doc)})
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, p := range ps {
					keys = append(keys, p.Key())
				}
				if diff := cmp.Diff(tc.want, keys); diff != "" {
					t.Errorf("keys (-want +got):\n%s", diff)
				}
				return
			}
			var ve *policy.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err %v, policies %d; want a ValidationError", err, len(ps))
			}
			var got []wantErr
			for _, fe := range ve.Errors {
				got = append(got, wantErr{fe.Field, fe.Line, fe.Reason})
			}
			if len(got) != len(tc.errs) {
				t.Fatalf("errors:\n%v\nwant:\n%v", err, tc.errs)
			}
			for i, w := range tc.errs {
				if got[i].field != w.field || got[i].line != w.line || !strings.Contains(got[i].reason, w.reason) {
					t.Errorf("error %d: %+v, want %+v", i, got[i], w)
				}
			}
		})
	}
}

type wantErr struct {
	field  string
	line   int
	reason string
}

// TestRecipes: every manifest of testdata/recipes (public recipes written
// for kubectl, most without a namespace) is read unchanged with -n, as
// kubectl reads it, and none is read without one.
func TestRecipes(t *testing.T) {
	files, _ := filepath.Glob("testdata/recipes/*.yaml")
	if len(files) != 15 {
		t.Fatalf("%d recipes in testdata/recipes, want 15", len(files))
	}
	withoutNS := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := policy.Parse(f, data); err != nil {
			withoutNS++
		}
		for _, opts := range []policy.ParseOptions{
			{DefaultNamespace: "default"},
			{DefaultNamespace: "default", EnforceNamespace: true},
		} {
			ps, err := policy.ParseFilesWith(opts, policy.File{Name: f, Data: data})
			if err != nil || len(ps) != 1 || ps[0].Namespace != "default" {
				t.Errorf("%s with %+v: %d policies, %v", f, opts, len(ps), err)
			}
		}
	}
	if withoutNS != 9 {
		t.Errorf("%d recipes refused without -n, want the 9 without a namespace", withoutNS)
	}
}
