// Package policy reads, validates and evaluates Kubernetes
// networking.k8s.io/v1 NetworkPolicy objects over Latch workloads, with the
// exact Kubernetes semantics plus a baseline for directions no policy
// isolates.
//
// It is pure: it does no I/O of its own and imports no echo, netlink, BPF or
// WireGuard packages. Everything that evaluates policy uses it: the view
// computation (package netmap, which also compiles the rule tables the
// enforcers load), the admin API's what-if check behind the console, the
// CLI's `latch policy eval` and the policy suggestions' tests. Anything may
// import it.
package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/latchnet/latch/internal/strictyaml"
	yaml3 "go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIVersion and Kind are the only type a policy document may have.
const (
	APIVersion = "networking.k8s.io/v1"
	Kind       = "NetworkPolicy"
)

// ErrInvalid is wrapped by every error that refuses a policy document.
var ErrInvalid = errors.New("invalid policy")

// Source says where a policy was read from.
type Source struct {
	File string `json:"file,omitempty"`
	// Document is the 1-based index of the document among the non-empty
	// documents of File.
	Document int `json:"document,omitempty"`
	// Line is the 1-based line in File where the document starts (for an
	// item of a list, where the item starts).
	Line int `json:"line,omitempty"`
	// Item is the 1-based index of the policy among the items of a List
	// or NetworkPolicyList document; 0 when the document is the policy.
	Item int `json:"item,omitempty"`
}

// Policy is one validated NetworkPolicy and where it came from.
type Policy struct {
	networkingv1.NetworkPolicy
	Source Source `json:"-"`
}

// Key is "namespace/name", unique among applied policies.
func (p *Policy) Key() string { return p.Namespace + "/" + p.Name }

// FieldError is one reason a document was refused.
type FieldError struct {
	File     string
	Document int    // 1-based; 0 when the error is about the whole file
	Name     string // metadata.name, when it could be read
	Line     int    // 1-based line of the offending field, or of the document
	Field    string // field path, such as spec.ingress[0].ports[1].endPort
	Reason   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Document > 0 {
		fmt.Fprintf(&b, "document %d", e.Document)
		var extra []string
		if e.Name != "" {
			extra = append(extra, fmt.Sprintf("name %q", e.Name))
		}
		if e.Line > 0 {
			extra = append(extra, fmt.Sprintf("line %d", e.Line))
		}
		if len(extra) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(extra, ", "))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// ValidationError lists every reason an input was refused. Nothing of an
// input that produced a ValidationError may be applied.
type ValidationError struct {
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	if len(lines) == 1 {
		return "invalid policy: " + lines[0]
	}
	return fmt.Sprintf("invalid policy (%d errors):\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// File is one named input of policy documents.
type File struct {
	Name string
	Data []byte
}

// ParseOptions are the namespace rules of kubectl for documents read by
// ParseFilesWith. The zero value requires every document to name its
// namespace.
type ParseOptions struct {
	// DefaultNamespace is the namespace of a policy whose
	// metadata.namespace is empty, as kubectl's -n (default "default").
	DefaultNamespace string
	// EnforceNamespace refuses a policy whose metadata.namespace is set
	// and is not DefaultNamespace, as kubectl does when -n is given
	// explicitly.
	EnforceNamespace bool
}

// Parse reads the NetworkPolicy documents of one file. See ParseFiles.
func Parse(name string, data []byte) ([]*Policy, error) {
	return ParseFiles(File{Name: name, Data: data})
}

// ParseFiles reads multi-document YAML (or JSON) NetworkPolicy files,
// strictly: unknown and duplicate fields are errors, as are a wrong
// apiVersion or kind, any invalid field, and two policies with the same name
// in one namespace. If any document is invalid it returns a
// *ValidationError naming every problem and no policies. Every policy must
// name its namespace; ParseFilesWith applies kubectl's rules instead.
func ParseFiles(files ...File) ([]*Policy, error) {
	return ParseFilesWith(ParseOptions{}, files...)
}

// ParseFilesWith is ParseFiles with kubectl's namespace rules (see
// ParseOptions). A document may also be a "List" (apiVersion v1) or a
// "NetworkPolicyList" whose items are NetworkPolicies, as `kubectl get -o
// yaml` writes them; errors in an item name the field from the document's
// top (items[2].spec...) and its line.
func ParseFilesWith(opts ParseOptions, files ...File) ([]*Policy, error) {
	var (
		out  []*Policy
		errs []*FieldError
		seen = map[string]Source{}
	)
	for _, f := range files {
		docs, err := splitDocuments(f.Data)
		if err != nil {
			errs = append(errs, &FieldError{File: f.Name, Reason: err.Error()})
			continue
		}
		for i, d := range docs {
			ps, ferrs := parseDocument(f.Name, i+1, d, opts)
			if len(ferrs) > 0 {
				errs = append(errs, ferrs...)
				continue
			}
			for _, p := range ps {
				k := p.Key()
				if prev, dup := seen[k]; dup {
					errs = append(errs, &FieldError{
						File: f.Name, Document: i + 1, Name: p.Name, Line: p.Source.Line, Field: p.field("metadata.name"),
						Reason: fmt.Sprintf("duplicate name: namespace %q already has a policy %q (%s document %d); rename one of them",
							p.Namespace, p.Name, prev.File, prev.Document),
					})
					continue
				}
				seen[k] = p.Source
				out = append(out, p)
			}
		}
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return out, nil
}

type document struct {
	line int // 1-based line where the document's text starts
	text []byte
}

var separator = regexp.MustCompile(`^---(\s.*)?$`)

// splitDocuments cuts YAML on "---" lines and drops documents that hold
// only blanks and comments.
func splitDocuments(data []byte) ([]document, error) {
	var (
		docs []document
		cur  bytes.Buffer
		curL = 1
		n    = 0
	)
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, document{line: curL, text: append([]byte(nil), cur.Bytes()...)})
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		n++
		line := sc.Text()
		if separator.MatchString(strings.TrimRight(line, "\r")) {
			flush()
			curL = n + 1
			continue
		}
		if cur.Len() == 0 && strings.TrimSpace(line) == "" {
			curL = n + 1
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %v", err)
	}
	flush()
	return docs, nil
}

func hasContent(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

var (
	yamlLine = regexp.MustCompile(`^(?:YAML: |yaml: )?line (\d+): (.*)$`)
)

// List kinds a document may have besides Kind: kubectl's generic List
// (apiVersion v1) and the typed NetworkPolicyList (apiVersion APIVersion).
const (
	ListKind              = "List"
	ListAPIVersion        = "v1"
	NetworkPolicyListKind = "NetworkPolicyList"
)

// policyList is a List or NetworkPolicyList document; its items are
// decoded one by one.
type policyList struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ListMeta   `json:"metadata"`
	Items      []json.RawMessage `json:"items"`
}

func parseDocument(file string, index int, d document, opts ParseOptions) ([]*Policy, []*FieldError) {
	var node yaml3.Node
	if err := yaml3.Unmarshal(d.text, &node); err != nil {
		return nil, []*FieldError{{File: file, Document: index, Line: d.line, Reason: "YAML syntax: " + relineYAMLError(err.Error(), d.line)}}
	}
	in := docInput{file: file, index: index, lines: lineFinder{root: &node, base: d.line}, opts: opts}
	switch kind := topKind(&node); kind {
	case ListKind, NetworkPolicyListKind:
		return parseList(in, d, kind)
	}
	p, errs := parseObject(in, d.text, 0, "", d.line)
	if len(errs) > 0 {
		return nil, errs
	}
	return []*Policy{p}, nil
}

// docInput is what the errors of one document need.
type docInput struct {
	file  string
	index int
	lines lineFinder
	opts  ParseOptions
}

// fe is an error about field, at its line (at the document's first line
// for field "").
func (in docInput) fe(field string, reason string) *FieldError {
	line := in.lines.base
	if field != "" {
		line = in.lines.find(field)
	}
	return &FieldError{File: in.file, Document: in.index, Line: line, Field: field, Reason: reason}
}

// topKind is the kind of a document's top-level mapping, or "".
func topKind(doc *yaml3.Node) string {
	if doc.Kind != yaml3.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml3.MappingNode {
		return ""
	}
	m := doc.Content[0]
	for j := 0; j+1 < len(m.Content); j += 2 {
		if m.Content[j].Value == "kind" && m.Content[j+1].Kind == yaml3.ScalarNode {
			return m.Content[j+1].Value
		}
	}
	return ""
}

// parseList reads a document of kind ListKind or NetworkPolicyListKind.
func parseList(in docInput, d document, kind string) ([]*Policy, []*FieldError) {
	var l policyList
	unknown, err := strictyaml.Unmarshal(d.text, &l)
	if err != nil {
		return nil, []*FieldError{in.fe("", "cannot read as a "+kind+": "+relineYAMLError(err.Error(), d.line))}
	}
	var errs []*FieldError
	for _, u := range unknown {
		errs = append(errs, in.fe(u.Path, "unknown field: a "+kind+" has apiVersion, kind, metadata and items"))
	}
	want := ListAPIVersion
	if kind == NetworkPolicyListKind {
		want = APIVersion
	}
	if l.APIVersion != want {
		errs = append(errs, in.fe("apiVersion", fmt.Sprintf("must be %q for a %s, not %q", want, kind, l.APIVersion)))
	}
	var out []*Policy
	for i, raw := range l.Items {
		p, ferrs := parseObject(in, raw, i+1, kind, in.lines.find(fmt.Sprintf("items[%d]", i)))
		errs = append(errs, ferrs...)
		if p != nil {
			out = append(out, p)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// parseObject reads one NetworkPolicy, starting at line: a whole document
// (item 0) or the 1-based item of a list of kind list.
func parseObject(in docInput, text []byte, item int, list string, line int) (*Policy, []*FieldError) {
	prefix := ""
	if item > 0 {
		prefix = fmt.Sprintf("items[%d].", item-1)
	}
	fe := func(field, reason string) *FieldError {
		if field == "" {
			return &FieldError{File: in.file, Document: in.index, Line: line, Field: strings.TrimSuffix(prefix, "."), Reason: reason}
		}
		return in.fe(prefix+field, reason)
	}
	var p Policy
	unknown, err := strictyaml.Unmarshal(text, &p.NetworkPolicy)
	if err != nil {
		return nil, []*FieldError{fe("", "cannot read as a NetworkPolicy: "+relineYAMLError(err.Error(), line))}
	}
	var errs []*FieldError
	for _, u := range unknown {
		errs = append(errs, fe(u.Path, "unknown field: remove it or check its spelling (see `kubectl explain networkpolicy`)"))
	}
	// The items of a NetworkPolicyList may leave out their type, as the
	// API server does.
	if list == NetworkPolicyListKind && p.APIVersion == "" && p.Kind == "" {
		p.APIVersion, p.Kind = APIVersion, Kind
	}
	if p.APIVersion != APIVersion {
		errs = append(errs, fe("apiVersion", fmt.Sprintf("must be %q, not %q", APIVersion, p.APIVersion)))
	}
	if p.Kind != Kind {
		reason := fmt.Sprintf("must be %q, not %q", Kind, p.Kind)
		if list != "" {
			reason += ": a " + list + " here holds only NetworkPolicies"
		}
		errs = append(errs, fe("kind", reason))
	}
	switch o := in.opts; {
	case p.Namespace == "":
		p.Namespace = o.DefaultNamespace
	case o.EnforceNamespace && p.Namespace != o.DefaultNamespace:
		// kubectl's words (k8s.io/cli-runtime resource.Builder).
		errs = append(errs, fe("metadata.namespace", fmt.Sprintf(
			"the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.",
			p.Namespace, o.DefaultNamespace, p.Namespace)))
	}
	for _, e := range spiffeProblems(&p.NetworkPolicy) {
		errs = append(errs, fe(e.field, e.reason))
	}
	for _, e := range validate(&p.NetworkPolicy) {
		errs = append(errs, fe(e.field, e.reason))
	}
	for _, e := range errs {
		e.Name = p.Name
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.Source = Source{File: in.file, Document: in.index, Line: line, Item: item}
	return &p, nil
}

// field is the path of a field of p from the top of its document.
func (p *Policy) field(f string) string {
	if p.Source.Item > 0 {
		return fmt.Sprintf("items[%d].%s", p.Source.Item-1, f)
	}
	return f
}

// relineYAMLError turns "yaml: line 3: ..." into file line numbers.
func relineYAMLError(msg string, base int) string {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("line %d: %s", n+base-1, m[2])
	}
	return msg
}

// lineFinder maps a field path (spec.ingress[0].ports[1].port) to the line
// of the deepest node of the path that exists in the document.
type lineFinder struct {
	root *yaml3.Node
	base int
}

var pathPart = regexp.MustCompile(`[^.\[\]]+|\[\d+\]`)

func (lf lineFinder) find(path string) int {
	n := lf.root
	if n == nil || n.Kind != yaml3.DocumentNode || len(n.Content) == 0 {
		return lf.base
	}
	n = n.Content[0]
	line := n.Line
	for _, part := range pathPart.FindAllString(path, -1) {
		var next *yaml3.Node
		switch {
		case strings.HasPrefix(part, "["):
			i, _ := strconv.Atoi(strings.Trim(part, "[]"))
			if n.Kind == yaml3.SequenceNode && i < len(n.Content) {
				next = n.Content[i]
			}
		case n.Kind == yaml3.MappingNode:
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == part {
					next = n.Content[j+1]
					line = n.Content[j].Line
					break
				}
			}
		}
		if next == nil {
			break
		}
		n = next
		if n.Kind != yaml3.MappingNode || strings.HasPrefix(part, "[") {
			line = n.Line
		}
	}
	return line + lf.base - 1
}

// SortPolicies orders policies by namespace, then name.
func SortPolicies(ps []*Policy) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Key() < ps[j].Key() })
}
