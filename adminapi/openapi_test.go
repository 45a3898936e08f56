package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
)

var update = flag.Bool("update", false, "rewrite openapi.json from Routes and the types")

// TestOpenAPIIsCurrent regenerates the OpenAPI description from Routes and
// the types of this package (with their doc comments) and compares it with
// openapi.json: a route or a field changed without the description fails.
// go test ./adminapi -run OpenAPI -update rewrites it.
func TestOpenAPIIsCurrent(t *testing.T) {
	got, err := generateOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("openapi.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, OpenAPI) {
		t.Fatalf("openapi.json is not current: run go test ./adminapi -run OpenAPI -update")
	}
}

// TestEveryFieldHasAJSONTag: every exported field of every type the admin
// API sends or takes has a lowerCamel json tag, so that no Go field name
// reaches a client.
func TestEveryFieldHasAJSONTag(t *testing.T) {
	lowerCamel := regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	for name, typ := range apiTypes() {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous {
				t.Errorf("%s embeds %s: spell its fields out", name, f.Name)
			}
			if !lowerCamel.MatchString(tag) {
				t.Errorf("%s.%s: json tag %q, want a lowerCamel name", name, f.Name, tag)
			}
		}
	}
	if len(apiTypes()) < 20 {
		t.Fatalf("found only %d types through Routes", len(apiTypes()))
	}
}

// TestRoutesAreDistinct: one route per method and path, one name each.
func TestRoutesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Routes {
		for _, k := range []string{r.Method + " " + r.Path, r.Name} {
			if seen[k] {
				t.Errorf("%s twice in Routes", k)
			}
			seen[k] = true
		}
	}
}

// TestGrantTakesBothForms: a grant in a request is an object or a string
// in the grant syntax (what the console's token form sends); an object
// with another field is refused.
func TestGrantTakesBothForms(t *testing.T) {
	var s GrantSet
	if err := json.Unmarshal([]byte(`{"workloads":["namespace=prod,name=web-*",{"namespace":"dev","labels":{"app":"x"}}]}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.Workloads[0].Spec() != "namespace=prod,name=web-*" || s.Workloads[1].Namespace != "dev" || s.Workloads[1].Labels["app"] != "x" {
		t.Fatalf("decoded %+v", s)
	}
	if err := json.Unmarshal([]byte(`{"workloads":[{"namespace":"dev","label":{}}]}`), &s); err == nil || !strings.Contains(err.Error(), "namespace, labels and name") {
		t.Fatalf("unknown field in a grant: %v", err)
	}
	b, _ := json.Marshal(GrantSet{Workloads: []Grant{GrantSpec("namespace=a"), {Namespace: "b"}}})
	if string(b) != `{"workloads":["namespace=a",{"namespace":"b"}]}` {
		t.Fatalf("encoded %s", b)
	}
}

// apiTypes returns the struct types reachable from Routes and Error, by
// name.
func apiTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		switch t.Kind() {
		case reflect.Slice, reflect.Map, reflect.Pointer:
			walk(t.Elem())
		case reflect.Struct:
			if t.PkgPath() != reflect.TypeFor[Error]().PkgPath() || out[t.Name()] != nil {
				return
			}
			out[t.Name()] = t
			for i := range t.NumField() {
				walk(t.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeFor[Error]())
	for _, r := range Routes {
		for _, v := range []any{r.Request, r.Response} {
			if v != nil {
				walk(reflect.TypeOf(v))
			}
		}
	}
	return out
}

// obj is a JSON object that keeps its keys in order.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o *obj) set(k string, v any) { *o = append(*o, kv{k, v}) }

// docs holds the doc comments of this package's types and fields.
type docs struct {
	types  map[string]string
	fields map[string]string // "Type.Field"
}

func readDocs() (docs, error) {
	d := docs{types: map[string]string{}, fields: map[string]string{}}
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments)
	if err != nil {
		return d, err
	}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, decl := range f.Decls {
				g, ok := decl.(*ast.GenDecl)
				if !ok || g.Tok != token.TYPE {
					continue
				}
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil {
						doc = g.Doc
					}
					d.types[ts.Name.Name] = text(doc)
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fl := range st.Fields.List {
						c := fl.Doc
						if c == nil {
							c = fl.Comment
						}
						for _, n := range fl.Names {
							d.fields[ts.Name.Name+"."+n.Name] = text(c)
						}
					}
				}
			}
		}
	}
	return d, nil
}

func text(c *ast.CommentGroup) string {
	if c == nil {
		return ""
	}
	return strings.Join(strings.Fields(c.Text()), " ")
}

type generator struct {
	docs    docs
	schemas map[string]obj
}

func (g *generator) schema(t reflect.Type) obj {
	switch t {
	case reflect.TypeFor[time.Time]():
		return obj{{"type", "string"}, {"format", "date-time"}}
	case reflect.TypeFor[netip.Addr]():
		return obj{{"type", "string"}, {"description", "an IP address"}, {"example", "100.64.0.1"}}
	case reflect.TypeFor[netip.AddrPort]():
		return obj{{"type", "string"}, {"description", "an IP address and port"}, {"example", "198.18.0.1:51820"}}
	case reflect.TypeFor[netip.Prefix]():
		return obj{{"type", "string"}, {"description", "an IP prefix"}, {"example", "100.64.0.1/32"}}
	}
	switch t.Kind() {
	case reflect.String:
		return obj{{"type", "string"}}
	case reflect.Bool:
		return obj{{"type", "boolean"}}
	case reflect.Int, reflect.Int64:
		return obj{{"type", "integer"}, {"format", "int64"}}
	case reflect.Uint16:
		return obj{{"type", "integer"}, {"minimum", 0}, {"maximum", 65535}}
	case reflect.Uint32:
		return obj{{"type", "integer"}, {"format", "int64"}, {"minimum", 0}, {"maximum", uint32(1<<32 - 1)}}
	case reflect.Uint64:
		return obj{{"type", "integer"}, {"format", "int64"}, {"minimum", 0}}
	case reflect.Pointer:
		// Only on omitempty fields: absent when nil, never null.
		return g.schema(t.Elem())
	case reflect.Slice:
		return obj{{"type", "array"}, {"items", g.schema(t.Elem())}}
	case reflect.Map:
		return obj{{"type", "object"}, {"additionalProperties", g.schema(t.Elem())}}
	case reflect.Struct:
		g.component(t)
		return obj{{"$ref", "#/components/schemas/" + t.Name()}}
	}
	panic("no schema for " + t.String())
}

func (g *generator) component(t reflect.Type) {
	if _, ok := g.schemas[t.Name()]; ok {
		return
	}
	s := obj{{"type", "object"}}
	g.schemas[t.Name()] = s // placeholder against cycles
	if d := g.docs.types[t.Name()]; d != "" {
		s.set("description", d)
	}
	var props obj
	var required []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		p := g.schema(f.Type)
		if d := g.docs.fields[t.Name()+"."+f.Name]; d != "" {
			// The comment names the Go field; a client knows the JSON name.
			if rest, ok := strings.CutPrefix(d, f.Name+" "); ok {
				d = name + " " + rest
			}
			if p[0].k == "$ref" {
				// A $ref takes no siblings in OpenAPI 3.0.
				p = obj{{"allOf", []any{p}}}
			}
			p.set("description", d)
		}
		props.set(name, p)
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	s.set("properties", props)
	if len(required) > 0 {
		s.set("required", required)
	}
	s.set("additionalProperties", false)
	g.schemas[t.Name()] = s
}

func generateOpenAPI() ([]byte, error) {
	d, err := readDocs()
	if err != nil {
		return nil, err
	}
	g := &generator{docs: d, schemas: map[string]obj{}}
	errRef := g.schema(reflect.TypeFor[Error]())
	paths := map[string]obj{}
	var order []string
	for _, r := range Routes {
		op := obj{{"operationId", r.Name}, {"summary", r.Summary}}
		var params []obj
		for _, m := range regexp.MustCompile(`\{([a-z]+)\}`).FindAllStringSubmatch(r.Path, -1) {
			params = append(params, obj{{"name", m[1]}, {"in", "path"}, {"required", true}, {"schema", obj{{"type", "string"}}}})
		}
		for _, q := range r.Query {
			params = append(params, obj{{"name", q.Name}, {"in", "query"}, {"description", q.Description}, {"schema", obj{{"type", "string"}}}})
		}
		if len(params) > 0 {
			op.set("parameters", params)
		}
		if r.Request != nil {
			media := r.RequestMedia
			if media == "" {
				media = "application/json"
			}
			op.set("requestBody", obj{{"required", true}, {"content", obj{{media, obj{{"schema", g.schema(reflect.TypeOf(r.Request))}}}}}})
		}
		var ok obj
		switch {
		case r.Response == nil:
			ok = obj{{"204", obj{{"description", "done"}}}}
		default:
			media := r.ResponseMedia
			if media == "" {
				media = "application/json"
			}
			content := obj{{media, obj{{"schema", g.schema(reflect.TypeOf(r.Response))}}}}
			if r.Stream != "" {
				content.set(r.Stream, obj{{"schema", g.schema(reflect.TypeOf(r.Response).Elem())}})
			}
			ok = obj{{"200", obj{{"description", "OK"}, {"content", content}}}}
		}
		ok.set("default", obj{{"description", "an error: what is wrong and what to do"},
			{"content", obj{{"application/json", obj{{"schema", errRef}}}}}})
		op.set("responses", ok)
		if r.Method != http.MethodGet {
			op.set("description", "Needs the role admin.")
		}
		if _, seen := paths[r.Path]; !seen {
			order = append(order, r.Path)
		}
		paths[r.Path] = append(paths[r.Path], kv{strings.ToLower(r.Method), op})
	}
	var po obj
	for _, p := range order {
		po.set(p, paths[p])
	}
	var names []string
	for n := range g.schemas {
		names = append(names, n)
	}
	slices.Sort(names) // so that the file does not change with the walk's order
	var so obj
	for _, n := range names {
		so.set(n, g.schemas[n])
	}
	doc := obj{
		{"openapi", "3.0.3"},
		{"info", obj{{"title", "Latch admin API"}, {"version", "v1"},
			{"description", "The admin API of the Latch coordinator: nodes, namespaces, workloads, policies, join tokens, users, API tokens, audit, flows. " +
				"Every route needs a credential: the admin token or an API token as \"Authorization: Bearer TOKEN\", or a console session cookie " +
				"(with the X-CSRF-Token header on every change). The role viewer may only GET. This document is served at " + OpenAPIPath + " without authentication."}}},
		{"servers", []obj{{{"url", Prefix}}}},
		{"security", []obj{{{"bearer", []string{}}}, {{"session", []string{}}}}},
		{"paths", po},
		{"components", obj{
			{"schemas", so},
			{"securitySchemes", obj{
				{"bearer", obj{{"type", "http"}, {"scheme", "bearer"}, {"description", "the admin token, or an API token (latchapi.ID.SECRET)"}}},
				{"session", obj{{"type", "apiKey"}, {"in", "cookie"}, {"name", "latch_session"}, {"description", "a console session; changes also need the X-CSRF-Token header"}}},
			}},
		}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// TestOpenAPIIsValid checks the document's structure against the OpenAPI
// 3 specification (kin-openapi's validator: references resolve, schemas
// are well-formed, operation ids are unique, path parameters declared).
func TestOpenAPIIsValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if doc.Paths.Len() == 0 || len(doc.Components.Schemas) == 0 {
		t.Fatalf("%d paths, %d schemas", doc.Paths.Len(), len(doc.Components.Schemas))
	}
}
