package inventory

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := `namespaces:
  - name: x
    labels: {team: web}
  - name: y
workloads:
  - name: a
    namespace: x
    labels: {app: web}
    ip: 100.64.1.10
    ports:
      - {name: http, port: 80}
      - {port: 53, protocol: UDP}
`
	inv, err := Parse("inv.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Workloads[0].Ports[0].Protocol; got != TCP {
		t.Errorf("default protocol = %q, want TCP", got)
	}
	if got := inv.Namespaces[1].Name; got != "y" {
		t.Errorf("namespace y read as %q (YAML 1.2: y is a string)", got)
	}
	if l := inv.Namespaces[0].EffectiveLabels(); l[NamespaceNameLabel] != "x" || l["team"] != "web" {
		t.Errorf("effective labels = %v", l)
	}
	if p, ok := inv.Workloads[0].NamedPort("http", TCP); !ok || p != 80 {
		t.Errorf("NamedPort(http) = %d, %v", p, ok)
	}
	if _, ok := inv.Workloads[0].NamedPort("http", UDP); ok {
		t.Errorf("NamedPort(http, UDP) found a TCP port")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, doc, want string }{
		{"unknown field", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x, ip: 100.64.0.1, lables: {}}]\n", "workloads[0].lables: unknown field"},
		{"undeclared namespace", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: z, ip: 100.64.0.1}]\n", `namespace "z" is not listed`},
		{"missing ip", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x}]\n", "workloads[0].ip: required"},
		{"bad ip", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x, ip: 100.64.0.300}]\n", "100.64.0.300"},
		{"duplicate ip", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x, ip: 100.64.0.1}, {name: b, namespace: x, ip: 100.64.0.1}]\n", "already used by workload x/a"},
		{"duplicate name", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x, ip: 100.64.0.1}, {name: a, namespace: x, ip: 100.64.0.2}]\n", "x/a is already the name of workloads[0]"},
		{"bad protocol", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x, ip: 100.64.0.1, ports: [{port: 1, protocol: ICMP}]}]\n", `"ICMP" is not one of TCP, UDP, SCTP`},
		{"port zero", "namespaces: [{name: x}]\nworkloads: [{name: a, namespace: x, ip: 100.64.0.1, ports: [{port: 0}]}]\n", "ports[0].port: must be between 1 and 65535"},
		{"bad label", "namespaces: [{name: x, labels: {'-bad': v}}]\nworkloads: []\n", `key "-bad"`},
		{"bad name", "namespaces: [{name: X_1}]\nworkloads: []\n", `"X_1"`},
	} {
		_, err := Parse("inv.yaml", []byte(c.doc))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "inv.yaml") {
			t.Errorf("%s: error %v; want one naming inv.yaml and containing %q", c.name, err, c.want)
		}
	}
}
