// Package inventory holds Latch's model of what policy talks about:
// namespaces, workloads, nodes and sites, and reads the inventory YAML file that
// `latch policy eval` takes.
//
// It is pure: no I/O beyond parsing bytes it is given. Anything may import it.
package inventory

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// NamespaceNameLabel is the label every namespace carries automatically, as
// in Kubernetes.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Protocol is a transport protocol that policy can name.
type Protocol string

// The protocols NetworkPolicy knows.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Protocols lists the protocols in a fixed order.
var Protocols = []Protocol{TCP, UDP, SCTP}

// Valid reports whether p is one of TCP, UDP, SCTP.
func (p Protocol) Valid() bool { return p == TCP || p == UDP || p == SCTP }

// Namespace groups workloads; policies live in a namespace.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Monitor is true for a namespace in monitor mode: its workloads'
	// enforcers drop nothing and report what they would have dropped.
	Monitor bool `json:"monitor,omitempty"`
}

// EffectiveLabels returns the namespace's labels plus
// kubernetes.io/metadata.name=<name>. The result is a new map.
func (n Namespace) EffectiveLabels() map[string]string {
	l := make(map[string]string, len(n.Labels)+1)
	for k, v := range n.Labels {
		l[k] = v
	}
	l[NamespaceNameLabel] = n.Name
	return l
}

// Port is a port a workload declares, optionally named.
type Port struct {
	Name     string   `json:"name,omitempty"`
	Port     uint16   `json:"port"`
	Protocol Protocol `json:"protocol,omitempty"`
}

// Workload plays the role of a pod: a namespace, labels, an overlay address
// and the ports it serves.
type Workload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Node is the name of the node hosting the workload; empty in
	// inventories that only feed `latch policy eval`.
	Node  string     `json:"node,omitempty"`
	IP    netip.Addr `json:"ip"`
	Ports []Port     `json:"ports,omitempty"`
}

// Key is "namespace/name", the workload's unique name.
func (w *Workload) Key() string { return w.Namespace + "/" + w.Name }

// NamedPort resolves a port name against the workload's declared ports.
func (w *Workload) NamedPort(name string, proto Protocol) (uint16, bool) {
	for _, p := range w.Ports {
		if p.Name == name && p.Protocol == proto {
			return p.Port, true
		}
	}
	return 0, false
}

// Node is a machine in the overlay. A node is itself a workload (named after
// the node, in Namespace, with Labels) so a machine with no declared
// workloads is still covered by policy.
type Node struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	IP        netip.Addr        `json:"ip"`
	// PublicKey is the node's WireGuard public key (base64), if known.
	PublicKey string `json:"publicKey,omitempty"`
	// Endpoints are the node's underlay addresses.
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Ports are ports the node itself serves (for example 22/TCP).
	Ports []Port `json:"ports,omitempty"`
}

// AsWorkload returns the workload that stands for the node itself.
func (n *Node) AsWorkload() Workload {
	return Workload{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, Node: n.Name, IP: n.IP, Ports: n.Ports}
}

// Inventory is a set of namespaces, nodes, workloads and sites.
type Inventory struct {
	Namespaces []Namespace `json:"namespaces"`
	Nodes      []Node      `json:"nodes,omitempty"`
	Workloads  []Workload  `json:"workloads"`
	// Sites are networks of agentless hosts (see Site).
	Sites []Site `json:"sites,omitempty"`
}

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid inventory")

// Validate checks names, labels, addresses and ports, that every
// workload's namespace and node exist, and the sites (see Site). It reports every problem it finds.
func (inv *Inventory) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	checkLabels := func(where string, l map[string]string) { checkLabels(add, where, l) }
	checkPorts := func(where string, ports []Port) { checkPorts(add, where, ports) }
	nsSeen := map[string]bool{}
	for i, ns := range inv.Namespaces {
		w := fmt.Sprintf("namespaces[%d]", i)
		for _, e := range validation.IsDNS1123Label(ns.Name) {
			add("%s.name: %q: %s", w, ns.Name, e)
		}
		if nsSeen[ns.Name] {
			add("%s.name: namespace %q is listed twice", w, ns.Name)
		}
		nsSeen[ns.Name] = true
		checkLabels(w, ns.Labels)
	}
	ips := map[netip.Addr]string{}
	checkIP := func(where, who string, ip netip.Addr) {
		if !ip.IsValid() {
			add("%s.ip: required: give the overlay address (100.64.0.0/10)", where)
			return
		}
		if !ip.Is4() {
			add("%s.ip: %s is not IPv4: the overlay is IPv4 (100.64.0.0/10)", where, ip)
		}
		if other, ok := ips[ip]; ok {
			add("%s.ip: %s is already used by %s", where, ip, other)
		}
		ips[ip] = who
	}
	names := map[string]string{}
	// checkMember checks what nodes and workloads share: each is a workload.
	checkMember := func(where, kind string, w Workload) {
		for _, e := range validation.IsDNS1123Subdomain(w.Name) {
			add("%s.name: %q: %s", where, w.Name, e)
		}
		if !nsSeen[w.Namespace] {
			add("%s.namespace: namespace %q is not listed under namespaces", where, w.Namespace)
		}
		if other, ok := names[w.Key()]; ok {
			add("%s: %s is already the name of %s", where, w.Key(), other)
		}
		names[w.Key()] = where
		checkLabels(where, w.Labels)
		checkIP(where, kind+" "+w.Key(), w.IP)
		checkPorts(where, w.Ports)
	}
	nodeSeen := map[string]bool{}
	for i, n := range inv.Nodes {
		w := fmt.Sprintf("nodes[%d]", i)
		if nodeSeen[n.Name] {
			add("%s.name: node %q is listed twice", w, n.Name)
		}
		nodeSeen[n.Name] = true
		checkMember(w, "node", n.AsWorkload())
	}
	for i, wl := range inv.Workloads {
		w := fmt.Sprintf("workloads[%d]", i)
		if wl.Node != "" && len(inv.Nodes) > 0 && !nodeSeen[wl.Node] {
			add("%s.node: node %q is not listed under nodes", w, wl.Node)
		}
		checkMember(w, "workload", wl)
	}
	inv.validateSites(add, nsSeen, names)
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(errs, "\n  "))
}

// checkLabels checks label keys and values.
func checkLabels(add func(string, ...any), where string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			add("%s: key %q: %s", field(where, "labels"), k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			add("%s[%s]: value %q: %s", field(where, "labels"), k, v, e)
		}
	}
}

// checkPorts checks port numbers, protocols and names (a name at most once
// per protocol).
func checkPorts(add func(string, ...any), where string, ports []Port) {
	seen := map[string]bool{}
	for i, p := range ports {
		pw := field(where, fmt.Sprintf("ports[%d]", i))
		if p.Port == 0 {
			add("%s.port: must be between 1 and 65535", pw)
		}
		if !p.Protocol.Valid() {
			add("%s.protocol: %q is not one of TCP, UDP, SCTP", pw, p.Protocol)
		}
		if p.Name != "" {
			for _, e := range validation.IsValidPortName(p.Name) {
				add("%s.name: %q: %s", pw, p.Name, e)
			}
			k := p.Name + "/" + string(p.Protocol)
			if seen[k] {
				add("%s.name: %q is declared twice for %s", pw, p.Name, p.Protocol)
			}
			seen[k] = true
		}
	}
}

// checkName checks a workload's, node's or site's name.
func checkName(add func(string, ...any), where, name string) {
	for _, e := range validation.IsDNS1123Subdomain(name) {
		add("%s: %q: %s", field(where, "name"), name, e)
	}
}

// AllWorkloads returns the declared workloads followed by one workload per
// node standing for the node itself.
func (inv *Inventory) AllWorkloads() []Workload {
	out := make([]Workload, 0, len(inv.Workloads)+len(inv.Nodes))
	out = append(out, inv.Workloads...)
	for i := range inv.Nodes {
		out = append(out, inv.Nodes[i].AsWorkload())
	}
	return out
}
