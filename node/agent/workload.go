package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
)

// WorkloadsFile in the state directory holds the workloads with the
// addresses the coordinator assigned ([]inventory.Workload), so that a
// restarted agent binds them again before it reaches the coordinator.
const WorkloadsFile = "workloads.json"

// WorkloadStatus is one workload in Status.
type WorkloadStatus struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	IP        string            `json:"ip"`
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []inventory.Port  `json:"ports,omitempty"`
	// Cgroup is the workload's cgroup v2 directory, if declared; see
	// Config.WorkloadCgroups for what each enforcer does with it.
	Cgroup string `json:"cgroup,omitempty"`
	// SpiffeID is the workload's SPIFFE ID from SPIRE, if declared; its
	// label spiffe.io/id holds policy.SpiffeLabelValue of it.
	SpiffeID string `json:"spiffeID,omitempty"`
}

// WorkloadSpecHelp describes the syntax ParseWorkload accepts.
const WorkloadSpecHelp = "name=N,namespace=NS[,labels=k=v;k=v][,ports=[name=]PORT/PROTO;...][,cgroup=/sys/fs/cgroup/...][,spiffe_id=spiffe://TD/PATH]"

// ParseWorkload parses a --workload spec, WorkloadSpecHelp: fields are
// separated by ',', labels and ports inside a field by ';'; a port is
// [name=]port/proto with proto tcp, udp or sctp (tcp if omitted). It
// returns the declaration and the cgroup path ("" if none); the path is
// checked by Config validation, not here.
func ParseWorkload(spec string) (wire.WorkloadDecl, string, error) {
	var (
		d      wire.WorkloadDecl
		cgroup string
	)
	bad := func(format string, args ...any) (wire.WorkloadDecl, string, error) {
		return wire.WorkloadDecl{}, "", fmt.Errorf("workload %q: "+format+" (want %s)", append([]any{spec}, append(args, WorkloadSpecHelp)...)...)
	}
	fields, err := wire.SplitSpec(spec)
	if err != nil {
		return bad("%v", err)
	}
	for _, f := range fields {
		k, v := f.Key, f.Value
		switch k {
		case "name":
			d.Name = v
		case "namespace":
			d.Namespace = v
		case "labels":
			labels, err := wire.ParseLabelList(v)
			if err != nil {
				return bad("labels: %v", err)
			}
			d.Labels = labels
		case "ports":
			ports, err := parsePortList(v)
			if err != nil {
				return bad("ports: %v", err)
			}
			d.Ports = ports
		case "spiffe_id":
			d.SpiffeID = v
		case "cgroup":
			if v == "" {
				return bad("cgroup is empty")
			}
			cgroup = v
		default:
			return bad("unknown field %q: the fields are name, namespace, labels, ports, cgroup and spiffe_id", k)
		}
	}
	if d.Name == "" {
		return bad("name is missing")
	}
	if d.Namespace == "" {
		return bad("namespace is missing")
	}
	return d, cgroup, nil
}

// parsePortList parses "[name=]port/proto;...".
func parsePortList(s string) ([]inventory.Port, error) {
	var out []inventory.Port
	for _, item := range strings.Split(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p inventory.Port
		if name, rest, ok := strings.Cut(item, "="); ok {
			if name == "" {
				return nil, fmt.Errorf("%q has an empty port name", item)
			}
			p.Name, item = name, rest
		}
		num, proto, ok := strings.Cut(item, "/")
		if !ok {
			proto = "tcp"
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q: port must be a number 1-65535", num)
		}
		p.Port = uint16(n)
		p.Protocol = inventory.Protocol(strings.ToUpper(proto))
		if !p.Protocol.Valid() {
			return nil, fmt.Errorf("%q: protocol must be tcp, udp or sctp", proto)
		}
		out = append(out, p)
	}
	return out, nil
}

// checkWorkloads validates the declared workloads and their cgroups.
// isCgroup checks that a path is a cgroup v2 directory.
func checkWorkloads(ws []wire.WorkloadDecl, cgroups map[string]string, isCgroup func(string) error) error {
	seen := map[string]bool{}
	for i, w := range ws {
		if w.Name == "" || w.Namespace == "" {
			return fmt.Errorf("workload %d needs a name and a namespace", i)
		}
		key := w.Namespace + "/" + w.Name
		if seen[key] {
			return fmt.Errorf("workload %s is declared twice", key)
		}
		seen[key] = true
		if w.SpiffeID != "" {
			if err := policy.CheckSpiffeID(w.SpiffeID); err != nil {
				return fmt.Errorf("workload %s: spiffe_id: %w", key, err)
			}
		}
		for _, p := range w.Ports {
			if p.Port == 0 || !p.Protocol.Valid() {
				return fmt.Errorf("workload %s: port %d/%s: want a port 1-65535 and tcp, udp or sctp", key, p.Port, p.Protocol)
			}
		}
	}
	for key, path := range cgroups {
		if !seen[key] {
			return fmt.Errorf("cgroup %s is given for workload %s, which is not declared", path, key)
		}
		if err := isCgroup(path); err != nil {
			return fmt.Errorf("workload %s: cgroup %s: %w", key, path, err)
		}
	}
	return nil
}

// workloadPrefixes returns the /32 (or /128) of each workload's address.
func workloadPrefixes(ws []inventory.Workload) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ws))
	for _, w := range ws {
		if w.IP.IsValid() {
			out = append(out, netip.PrefixFrom(w.IP, w.IP.BitLen()))
		}
	}
	return out
}

// declared keeps the workloads of ws that are among decls (the saved
// assignment of a workload no longer declared is dropped).
func declared(ws []inventory.Workload, decls []wire.WorkloadDecl) []inventory.Workload {
	return slices.DeleteFunc(slices.Clone(ws), func(w inventory.Workload) bool {
		return !slices.ContainsFunc(decls, func(d wire.WorkloadDecl) bool {
			return d.Name == w.Name && d.Namespace == w.Namespace
		})
	})
}

// setWorkloads records ws as the node's workloads with their addresses,
// saves them if persist, and binds their addresses on the device if it is
// up. Failures are logged and shown in status; the next registration
// retries.
func (a *agent) setWorkloads(ws []inventory.Workload, persist bool) {
	a.mu.Lock()
	a.workloads = slices.Clone(ws)
	dev := a.dev
	a.mu.Unlock()
	if persist {
		if err := a.dir.writeJSON(WorkloadsFile, ws); err != nil {
			a.log.Warn("saving the workloads", logErr, err)
		}
	}
	if dev == nil {
		return // Run binds them once the device is up
	}
	a.bindWorkloads(dev, ws)
}

// bindWorkloads adds each workload's address to the device.
func (a *agent) bindWorkloads(dev interface{ SetAddresses([]netip.Prefix) error }, ws []inventory.Workload) {
	if err := dev.SetAddresses(workloadPrefixes(ws)); err != nil {
		a.mu.Lock()
		a.lastErr = "binding workload addresses: " + err.Error()
		a.mu.Unlock()
		a.log.Error("binding the workloads' addresses", logErr, err)
		return
	}
	a.log.Debug("workload addresses bound", logWorkloads, len(ws))
}

// loadWorkloads returns the saved workloads, nil if there are none.
func (d stateDir) loadWorkloads() ([]inventory.Workload, error) {
	var ws []inventory.Workload
	_, err := d.readJSON(WorkloadsFile, &ws)
	return ws, err
}

// workloadStatus lists the workloads for Status. Must hold a.mu.
func (a *agent) workloadStatus() []WorkloadStatus {
	out := make([]WorkloadStatus, 0, len(a.workloads))
	for _, w := range a.workloads {
		ws := WorkloadStatus{Name: w.Name, Namespace: w.Namespace, Labels: w.Labels, Ports: w.Ports,
			Cgroup: a.s.WorkloadCgroups[w.Key()]}
		for _, d := range a.s.Workloads {
			if d.Namespace == w.Namespace && d.Name == w.Name {
				ws.SpiffeID = d.SpiffeID
			}
		}
		if w.IP.IsValid() {
			ws.IP = w.IP.String()
		}
		out = append(out, ws)
	}
	return out
}
