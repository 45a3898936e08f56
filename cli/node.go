package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/latchnet/latch/internal/strictyaml"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/node/agent"
	"github.com/spf13/cobra"
)

// defaultStateDir is where `latch node` keeps its state unless told.
const defaultStateDir = "/var/lib/latch"

type nodeFlags struct {
	coordinator string
	token       string
	stateDir    string
	iface       string
	name        string
	labels      string
	listenPort  int
	endpoints   []string
	enforce     string
	pinDir      string
	cleanup     bool
	enrollOnly  bool
	workloads   []string
	configFile  string
	// fileLabels are the config file's labels, used when --labels is
	// not given.
	fileLabels map[string]string

	flowInterval  time.Duration
	metricsListen string
	spiffeSock    string
	coordID       string
	coordCA       string
	// routes is --advertise-routes; fileRoutes the config file's
	// advertiseRoutes, used when the flag is not given.
	routes     string
	fileRoutes []string
}

// nodeFile is `latch node --config FILE`: the same settings as the flags
// (a flag given on the command line wins) and the workloads of the node.
type nodeFile struct {
	Coordinator string            `json:"coordinator,omitempty"`
	StateDir    string            `json:"stateDir,omitempty"`
	Iface       string            `json:"iface,omitempty"`
	Name        string            `json:"name,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	ListenPort  int               `json:"listenPort,omitempty"`
	Endpoints   []string          `json:"endpoints,omitempty"`
	Enforce     string            `json:"enforce,omitempty"`
	BPFPinDir   string            `json:"bpfPinDir,omitempty"`
	// FlowInterval is a Go duration such as 5s.
	FlowInterval  string `json:"flowInterval,omitempty"`
	MetricsListen string `json:"metricsListen,omitempty"`
	// SpiffeSocket, CoordinatorID and CoordinatorCA are --spiffe-socket,
	// --coordinator-id and --coordinator-ca.
	SpiffeSocket  string         `json:"spiffeSocket,omitempty"`
	CoordinatorID string         `json:"coordinatorID,omitempty"`
	CoordinatorCA string         `json:"coordinatorCA,omitempty"`
	Workloads     []fileWorkload `json:"workloads,omitempty"`
	// AdvertiseRoutes is --advertise-routes, one route a line:
	// PREFIX or PREFIX:snat.
	AdvertiseRoutes []string `json:"advertiseRoutes,omitempty"`
}

type fileWorkload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []inventory.Port  `json:"ports,omitempty"`
	Cgroup    string            `json:"cgroup,omitempty"`
	// SpiffeID is the workload's SPIFFE ID from SPIRE (spiffe_id=).
	SpiffeID string `json:"spiffeID,omitempty"`
}

// applyFile fills the flags the command line left unset from the file and
// returns its workloads.
func (f *nodeFlags) applyFile(cmd *cobra.Command) ([]fileWorkload, error) {
	if f.configFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(f.configFile)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var nf nodeFile
	if err := strictyaml.UnmarshalStrict(data, &nf); err != nil {
		return nil, fmt.Errorf("--config %s: %w", f.configFile, err)
	}
	set := func(flag string, dst *string, v string) {
		if v != "" && !cmd.Flags().Changed(flag) {
			*dst = v
		}
	}
	set("coordinator", &f.coordinator, nf.Coordinator)
	set("state-dir", &f.stateDir, nf.StateDir)
	set("iface", &f.iface, nf.Iface)
	set("name", &f.name, nf.Name)
	set("enforce", &f.enforce, nf.Enforce)
	set("bpf-pin-dir", &f.pinDir, nf.BPFPinDir)
	set("metrics-listen", &f.metricsListen, nf.MetricsListen)
	if nf.FlowInterval != "" && !cmd.Flags().Changed("flow-interval") {
		d, err := time.ParseDuration(nf.FlowInterval)
		if err != nil {
			return nil, fmt.Errorf("--config %s: flowInterval %q: want a duration such as 5s", f.configFile, nf.FlowInterval)
		}
		f.flowInterval = d
	}
	set("spiffe-socket", &f.spiffeSock, nf.SpiffeSocket)
	set("coordinator-id", &f.coordID, nf.CoordinatorID)
	set("coordinator-ca", &f.coordCA, nf.CoordinatorCA)
	if len(nf.Labels) > 0 && !cmd.Flags().Changed("labels") {
		// As a map, not through the k=v,k=v text: a value with ',' or '='
		// must not turn into more labels.
		f.labels, f.fileLabels = "", nf.Labels
	}
	if nf.ListenPort != 0 && !cmd.Flags().Changed("listen-port") {
		f.listenPort = nf.ListenPort
	}
	if len(nf.Endpoints) > 0 && !cmd.Flags().Changed("endpoint") {
		f.endpoints = nf.Endpoints
	}
	for i, text := range nf.AdvertiseRoutes {
		if _, err := wire.ParseRoute(text); err != nil {
			return nil, fmt.Errorf("--config %s: advertiseRoutes[%d]: %w", f.configFile, i, err)
		}
	}
	if len(nf.AdvertiseRoutes) > 0 && !cmd.Flags().Changed("advertise-routes") {
		f.routes, f.fileRoutes = "", nf.AdvertiseRoutes
	}
	for i, w := range nf.Workloads {
		if w.Name == "" || w.Namespace == "" {
			return nil, fmt.Errorf("--config %s: workloads[%d]: name and namespace are required", f.configFile, i)
		}
		for j := range w.Ports {
			p := &nf.Workloads[i].Ports[j]
			p.Protocol = inventory.Protocol(strings.ToUpper(string(p.Protocol)))
			if p.Protocol == "" {
				p.Protocol = inventory.TCP
			}
			if !p.Protocol.Valid() || p.Port == 0 {
				return nil, fmt.Errorf("--config %s: workloads[%d].ports[%d]: want a port 1-65535 and protocol TCP, UDP or SCTP", f.configFile, i, j)
			}
		}
	}
	return nf.Workloads, nil
}

func newNodeCmd() *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "node --coordinator URL [--join-token T] [--state-dir DIR]",
		Short: "Run the node agent: enroll, bring up WireGuard and follow the coordinator",
		Long: `Runs the node agent until interrupted. On first start it enrolls with the
join token (LATCH_JOIN_TOKEN if --join-token is not given); later starts use
the SVID saved in the state directory and never the token. The agent brings
up the WireGuard interface, applies the last saved view at once, registers
with the coordinator (LATCH_COORDINATOR if --coordinator is not given) and
follows its view stream. "latch status" and "latch peers" ask it how it is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.cleanup {
				pin, err := agent.RemoveEnforcement(f.iface, f.pinDir)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "removed the eBPF enforcer of %s (%s)\n", f.iface, pin)
				}
				table, rerr := agent.RemoveRoutes(f.iface)
				if rerr == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "removed the site routes of %s and its SNAT rules (nftables table ip %s)\n", f.iface, table)
				}
				return errors.Join(err, rerr)
			}
			fileWorkloads, err := f.applyFile(cmd)
			if err != nil {
				return err
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			for _, w := range fileWorkloads {
				cfg.Workloads = append(cfg.Workloads, wire.WorkloadDecl{Name: w.Name, Namespace: w.Namespace, Labels: w.Labels, Ports: w.Ports, SpiffeID: w.SpiffeID})
				if w.Cgroup != "" {
					if cfg.WorkloadCgroups == nil {
						cfg.WorkloadCgroups = map[string]string{}
					}
					cfg.WorkloadCgroups[w.Namespace+"/"+w.Name] = w.Cgroup
				}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if f.enrollOnly {
				if err := agent.Enroll(cmd.Context(), cfg, log); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "enrolled; the identity is in %s\n", cfg.StateDir)
				return nil
			}
			return agent.Run(cmd.Context(), cfg, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.coordinator, "coordinator", "", "coordinator node API URL, https://HOST:PORT (default $LATCH_COORDINATOR)")
	fl.StringVar(&f.token, "join-token", "", "join token latch1.<id>.<secret>.<ca-hash>, used on first start only (default $LATCH_JOIN_TOKEN)")
	fl.StringVar(&f.stateDir, "state-dir", defaultStateDir, "directory for the node's keys, SVID, last view and status socket")
	fl.StringVar(&f.iface, "iface", agent.DefaultIface, "WireGuard interface name")
	fl.StringVar(&f.name, "name", "", "node name to enroll with (default: the host name)")
	fl.StringVar(&f.labels, "labels", "", "labels k=v,k=v the join token must give this node: a node's labels come from its token (latch admin token create --labels), and enrollment is refused if the token's differ; optional")
	fl.IntVar(&f.listenPort, "listen-port", agent.DefaultListenPort, "WireGuard UDP port")
	fl.StringVar(&f.enforce, "enforce", agent.EnforceAuto, "enforcement inside the tunnel: auto (eBPF where it loads, else userspace), ebpf, userspace or off")
	fl.StringVar(&f.pinDir, "bpf-pin-dir", "", "where the eBPF enforcer pins its maps and links (default /sys/fs/bpf/latch/<iface>)")
	fl.StringVar(&f.configFile, "config", "", "YAML file with the node's settings and workloads (flags given win)")
	fl.BoolVar(&f.enrollOnly, "enroll-only", false, "enroll with the join token (if not enrolled yet), save the identity in --state-dir and exit without starting")
	fl.DurationVar(&f.flowInterval, "flow-interval", agent.DefaultFlowInterval, "how long enforcer events are aggregated into flow records before upload")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "plain HTTP address serving Prometheus /metrics, without authentication (e.g. 127.0.0.1:9471); off when empty")
	fl.BoolVar(&f.cleanup, "cleanup", false, "remove what the agent of --iface leaves behind when it does not stop cleanly and exit: the eBPF enforcer's programs, maps and pins, the site routes through --iface and its SNAT rules")
	fl.StringArrayVar(&f.workloads, "workload", nil, "a workload on this node, "+agent.WorkloadSpecHelp+"; repeatable. Each gets an overlay address bound on the WireGuard interface")
	fl.StringArrayVar(&f.endpoints, "endpoint", nil, "underlay IP:PORT peers reach this node at; repeatable (default: every global IPv4 address with --listen-port)")
	fl.StringVar(&f.spiffeSock, "spiffe-socket", "", "take the node's SVID from the local SPIRE agent's Workload API (unix:///PATH/api.sock) instead of a join token; the node name is the SPIFFE ID's last path segment")
	fl.StringVar(&f.coordID, "coordinator-id", "", "with --spiffe-socket: the SPIFFE ID the coordinator must present (default spiffe://<the node's trust domain>/latch/coordinator)")
	fl.StringVar(&f.routes, "advertise-routes", "", "make this node a gateway: subnets it offers to carry, "+wire.RouteSyntax+" (snat: the gateway masquerades the overlay traffic it forwards into that subnet to its own address there); the node turns IPv4 forwarding on. Each route takes effect once an admin approves it (latch admin route approve)")
	fl.StringVar(&f.coordCA, "coordinator-ca", "", "with --spiffe-socket: the coordinator's CA certificate (its data dir's ca.crt), to trust a coordinator that has no SPIRE SVID (--trust-bundle)")
	return cmd
}

// config turns the flags into an agent.Config.
func (f nodeFlags) config() (agent.Config, error) {
	cfg := agent.Config{
		Coordinator:   f.coordinator,
		JoinToken:     f.token,
		StateDir:      f.stateDir,
		Iface:         f.iface,
		Name:          f.name,
		ListenPort:    f.listenPort,
		Enforce:       f.enforce,
		PinDir:        f.pinDir,
		SpiffeSocket:  f.spiffeSock,
		CoordinatorID: f.coordID,
		CoordinatorCA: f.coordCA,

		FlowInterval:  f.flowInterval,
		MetricsListen: f.metricsListen,
	}
	if cfg.Coordinator == "" {
		cfg.Coordinator = os.Getenv("LATCH_COORDINATOR")
	}
	if cfg.JoinToken == "" {
		cfg.JoinToken = os.Getenv("LATCH_JOIN_TOKEN")
	}
	if cfg.Coordinator == "" {
		return cfg, errors.New("no coordinator: pass --coordinator https://HOST:PORT or set LATCH_COORDINATOR")
	}
	if f.listenPort < 1 || f.listenPort > 65535 {
		return cfg, fmt.Errorf("--listen-port %d is out of range 1-65535", f.listenPort)
	}
	switch f.enforce {
	case agent.EnforceAuto, agent.EnforceEBPF, agent.EnforceUserspace, agent.EnforceOff:
	default:
		return cfg, fmt.Errorf("--enforce %q: want auto, ebpf, userspace or off", f.enforce)
	}
	routes, err := f.advertisedRoutes()
	if err != nil {
		return cfg, err
	}
	cfg.Routes = routes
	labels, err := parseNodeLabels(f.labels)
	if err != nil {
		return cfg, err
	}
	if f.labels == "" && len(f.fileLabels) > 0 {
		labels = maps.Clone(f.fileLabels)
	}
	cfg.Labels = labels
	for _, spec := range f.workloads {
		w, cgroup, err := agent.ParseWorkload(spec)
		if err != nil {
			return cfg, fmt.Errorf("--workload: %w", err)
		}
		cfg.Workloads = append(cfg.Workloads, w)
		if cgroup != "" {
			if cfg.WorkloadCgroups == nil {
				cfg.WorkloadCgroups = map[string]string{}
			}
			cfg.WorkloadCgroups[w.Namespace+"/"+w.Name] = cgroup
		}
	}
	for _, e := range f.endpoints {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(e))
		if err != nil {
			return cfg, fmt.Errorf("--endpoint %q: want IP:PORT, e.g. 198.18.0.1:51820", e)
		}
		cfg.Endpoints = append(cfg.Endpoints, ap)
	}
	return cfg, nil
}

// parseNodeLabels parses "k=v,k=v", refusing a key given twice.
func parseNodeLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value (want k=v,k=v)", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--labels: key %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

func newStatusCmd() *cobra.Command {
	var stateDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--state-dir DIR] [--json]",
		Short: "Show the local node agent's identity and connection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := agent.QueryStatus(cmd.Context(), stateDir)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", defaultStateDir, "the node agent's state directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newPeersCmd() *cobra.Command {
	var stateDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "peers [--state-dir DIR] [--json]",
		Short: "List the local node's WireGuard peers",
		Long: `List the local node's WireGuard peers with the path each one is
reached on: direct-lan (the endpoint in use is in a private or link-local
range), direct-public (any other endpoint) or none (never a handshake;
the reason, with the peer's candidate endpoints tried, follows the
table). --json adds each peer's candidates, which one is in use and
which were tried.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := agent.QueryPeers(cmd.Context(), stateDir)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), ps)
			}
			printPeers(cmd.OutOrStdout(), ps, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", defaultStateDir, "the node agent's state directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// advertisedRoutes reads --advertise-routes, or the config file's
// advertiseRoutes.
func (f nodeFlags) advertisedRoutes() ([]wire.Route, error) {
	if f.routes != "" {
		rs, err := wire.ParseRoutes(f.routes)
		if err != nil {
			return nil, fmt.Errorf("--advertise-routes: %w", err)
		}
		return rs, nil
	}
	var rs []wire.Route
	for _, text := range f.fileRoutes {
		r, _ := wire.ParseRoute(text) // checked by applyFile
		rs = append(rs, r)
	}
	return rs, nil
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatus(w io.Writer, st agent.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	conn := "yes"
	if !st.Connected {
		conn = "no"
	}
	rows := [][2]string{
		{"Name", st.Name},
		{"SPIFFE ID", st.SPIFFEID},
		{"SVID expires", st.SVIDExpiry.UTC().Format(time.RFC3339)},
		{"Coordinator", st.Coordinator},
		{"Connected", conn},
		{"View version", viewVersionLine(st)},
		{"Interface", st.Iface + " (" + st.Impl + ")"},
		{"Overlay IP", st.IP},
		{"Public key", st.PublicKey},
		{"Enforce", st.Enforce},
	}
	if e := st.Enforcement; e != nil {
		flows := "" // the eBPF enforcer does not count its tracked flows
		if e.Flows != nil {
			flows = fmt.Sprintf("%d flows tracked, ", *e.Flows)
		}
		rows = append(rows, [2]string{"Enforcement", fmt.Sprintf("view %d, %s%d packets passed, %d dropped, %d events (%d lost)",
			e.ViewVersion, flows, e.Passed, e.Dropped, e.Events, e.EventsLost)})
		if len(e.Packets) > 0 {
			reasons := make([]string, 0, len(e.Packets))
			for r, n := range e.Packets {
				reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
			}
			sort.Strings(reasons)
			rows = append(rows, [2]string{"Packets by reason", strings.Join(reasons, " ")})
		}
	}
	if f := st.Flows; f != nil {
		rows = append(rows, [2]string{"Flow records", fmt.Sprintf("%d sent, %d queued, %d in the open interval, %d dropped (buffer full)",
			f.Sent, f.Queued, f.Open, f.Dropped)})
	}
	for _, w := range st.Workloads {
		ip := w.IP
		if ip == "" {
			ip = "(no address yet)"
		}
		line := ip
		if w.Cgroup != "" {
			line += " cgroup " + w.Cgroup + " " + cgroupNote(st.Enforce)
		}
		rows = append(rows, [2]string{"Workload " + w.Namespace + "/" + w.Name, line})
	}
	for _, r := range st.Routes {
		rows = append(rows, [2]string{"Route " + r.Prefix, routeLine(st.Name, r)})
	}
	if f := st.Forwarding; f != nil {
		line := "on"
		switch {
		case f.Error != "":
			line = "unknown: " + f.Error
		case !f.Enabled:
			line = "OFF: the advertised routes carry nothing; turn it on with sysctl -w net.ipv4.ip_forward=1 (the agent sets it when it starts)"
		case f.SetByAgent:
			line = "on (set by the agent when it started)"
		}
		rows = append(rows, [2]string{"IPv4 forwarding", line})
	}
	for _, r := range st.SiteRoutes {
		line := "routed through " + st.Iface
		switch {
		case r.Error != "" && r.Installed:
			line = "routed through " + st.Iface + ", but the route should go and could not be removed: " + r.Error
		case r.Error != "":
			line = "not routed: " + r.Error
		case r.Conflict != "":
			line = "not routed: the kernel has a route of another owner for it (" + r.Conflict + "), left in place; remove it to let the overlay carry the prefix"
		case !r.Installed:
			line = "not routed yet"
		}
		rows = append(rows, [2]string{"Site route " + r.Prefix, line})
	}
	if st.RouteError != "" {
		rows = append(rows, [2]string{"Route error", st.RouteError})
	}
	if st.LastError != "" {
		rows = append(rows, [2]string{"Last error", st.LastError})
	}
	for _, r := range rows {
		writeRow(tw, r[0]+":", r[1])
	}
	tw.Flush()
}

// routeLine describes an advertised route: in force when the view names
// it, otherwise its status as of the last registration.
func routeLine(node string, r agent.RouteStatus) string {
	if r.Approved {
		line := "approved, in force"
		if r.Primary {
			line += ", primary gateway"
		}
		switch {
		case r.SNATActive:
			line += ", snat: overlay sources masqueraded to this gateway's address"
		case r.SNAT:
			line += ", snat NOT applied (see Route error)"
		}
		return line
	}
	line := r.Status + " (as of the last registration)"
	switch r.Status {
	case "":
		line = "advertised, not registered yet"
	case wire.RouteAdvertised:
		line = r.Status + " (as of the last registration; waits for an admin: latch admin route approve " + node + " " + r.Prefix + ")"
	}
	if r.SNAT {
		line += ", snat"
	}
	return line
}

// cgroupNote says what the enforcer of mode does with a workload's cgroup.
func cgroupNote(mode string) string {
	switch mode {
	case agent.EnforceEBPF:
		return "(eBPF: its sockets use this address, denied connects are refused)"
	case agent.EnforceUserspace:
		return "(not enforced: the userspace enforcer knows no cgroups; --enforce ebpf does)"
	}
	return "(not enforced: --enforce " + mode + ")"
}

// viewVersionLine is the received view's version, and the one in force
// when the enforcer could not load the received one.
func viewVersionLine(st agent.Status) string {
	if st.ViewError == "" && st.EnforcedVersion == st.ViewVersion {
		return fmt.Sprint(st.ViewVersion)
	}
	return fmt.Sprintf("%d received, %d in force (not loaded: %s; its new peers wait)", st.ViewVersion, st.EnforcedVersion, st.ViewError)
}

func printPeers(w io.Writer, ps []agent.PeerInfo, now time.Time) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no peers")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	writeRow(tw, "NODE", "ENDPOINT", "PATH", "ALLOWED IPS", "HANDSHAKE", "RX", "TX")
	var reasons []string
	for _, p := range ps {
		node := p.Node
		if node == "" {
			node = "(" + p.PublicKey[:min(8, len(p.PublicKey))] + "…)"
		}
		ep := p.Endpoint
		if ep == "" {
			ep = "-"
		}
		path := p.Path
		if path == "" {
			path = "-"
		}
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		writeRow(tw, node, ep, path, allowedIPs(p), hs, p.RxBytes, p.TxBytes)
		if p.Reason != "" {
			reasons = append(reasons, node+": "+p.Reason)
		}
	}
	tw.Flush()
	if len(reasons) > 0 {
		fmt.Fprintln(w)
		for _, r := range reasons {
			fmt.Fprintln(w, r)
		}
	}
}

// allowedIPs lists a peer's allowed IPs, each site prefix (outside the
// overlay) marked as such with whether its kernel route is installed.
// A peer without allowed IPs is a standby gateway: held so that its
// tunnel is up when it takes over a site.
func allowedIPs(p agent.PeerInfo) string {
	if len(p.AllowedIPs) == 0 {
		return "none (standby gateway)"
	}
	site := map[string]agent.SiteRoute{}
	for _, r := range p.SiteRoutes {
		site[r.Prefix] = r
	}
	out := make([]string, 0, len(p.AllowedIPs))
	for _, ip := range p.AllowedIPs {
		r, ok := site[ip]
		switch {
		case !ok:
		case r.Installed:
			ip += " (site, routed)"
		case r.Conflict != "":
			ip += " (site, NOT routed: " + r.Conflict + " holds it)"
		default:
			ip += " (site, NOT routed)"
		}
		out = append(out, ip)
	}
	return strings.Join(out, ",")
}
