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
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/latchnet/latch/internal/strictyaml"
	yaml3 "go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"
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
	// Line is the 1-based line in File where the document starts.
	Line int `json:"line,omitempty"`
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

// Parse reads the NetworkPolicy documents of one file. See ParseFiles.
func Parse(name string, data []byte) ([]*Policy, error) {
	return ParseFiles(File{Name: name, Data: data})
}

// ParseFiles reads multi-document YAML (or JSON) NetworkPolicy files,
// strictly: unknown and duplicate fields are errors, as are a wrong
// apiVersion or kind, any invalid field, and two policies with the same name
// in one namespace. If any document is invalid it returns a
// *ValidationError naming every problem and no policies.
func ParseFiles(files ...File) ([]*Policy, error) {
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
			p, ferrs := parseDocument(f.Name, i+1, d)
			if len(ferrs) > 0 {
				errs = append(errs, ferrs...)
				continue
			}
			k := p.Key()
			if prev, dup := seen[k]; dup {
				errs = append(errs, &FieldError{
					File: f.Name, Document: i + 1, Name: p.Name, Line: d.line, Field: "metadata.name",
					Reason: fmt.Sprintf("duplicate name: namespace %q already has a policy %q (%s document %d); rename one of them",
						p.Namespace, p.Name, prev.File, prev.Document),
				})
				continue
			}
			seen[k] = p.Source
			out = append(out, p)
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

func parseDocument(file string, index int, d document) (*Policy, []*FieldError) {
	fe := func(field string, line int, reason string) *FieldError {
		return &FieldError{File: file, Document: index, Line: line, Field: field, Reason: reason}
	}
	var node yaml3.Node
	if err := yaml3.Unmarshal(d.text, &node); err != nil {
		return nil, []*FieldError{fe("", d.line, "YAML syntax: "+relineYAMLError(err.Error(), d.line))}
	}
	var p Policy
	unknown, err := strictyaml.Unmarshal(d.text, &p.NetworkPolicy)
	if err != nil {
		return nil, []*FieldError{fe("", d.line, "cannot read as a NetworkPolicy: "+relineYAMLError(err.Error(), d.line))}
	}
	lines := lineFinder{root: &node, base: d.line}
	var errs []*FieldError
	for _, u := range unknown {
		errs = append(errs, fe(u.Path, lines.find(u.Path), "unknown field: remove it or check its spelling (see `kubectl explain networkpolicy`)"))
	}
	if p.APIVersion != APIVersion {
		errs = append(errs, fe("apiVersion", lines.find("apiVersion"),
			fmt.Sprintf("must be %q, not %q", APIVersion, p.APIVersion)))
	}
	if p.Kind != Kind {
		errs = append(errs, fe("kind", lines.find("kind"), fmt.Sprintf("must be %q, not %q", Kind, p.Kind)))
	}
	for _, e := range spiffeProblems(&p.NetworkPolicy) {
		errs = append(errs, fe(e.field, lines.find(e.field), e.reason))
	}
	for _, e := range validate(&p.NetworkPolicy) {
		errs = append(errs, fe(e.field, lines.find(e.field), e.reason))
	}
	for _, e := range errs {
		e.Name = p.Name
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.Source = Source{File: file, Document: index, Line: d.line}
	return &p, nil
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
