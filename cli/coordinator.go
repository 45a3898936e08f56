package cli

import (
	"log/slog"

	"github.com/latchnet/latch/coordinator"
	"github.com/latchnet/latch/policy"
	"github.com/spf13/cobra"
)

// newCoordinatorCmd parses `latch coordinator`'s flags into a
// coordinator.Config and runs it.
func newCoordinatorCmd() *cobra.Command {
	var c coordinator.Config
	var baseline string
	var relayOn bool
	cmd := &cobra.Command{
		Use:   "coordinator --listen ADDR --data-dir DIR --trust-domain TD",
		Short: "Run the coordinator: SPIFFE CA, store, policy, views, node and admin APIs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.Baseline = policy.Baseline(baseline)
			c.NoRelay = !relayOn
			c.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return coordinator.Run(cmd.Context(), c)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Listen, "listen", coordinator.DefaultListen, "HTTPS address to listen on")
	fl.StringVar(&c.DataDir, "data-dir", coordinator.DefaultDataDir, "directory for the CA, the database and the admin token")
	fl.StringVar(&c.TrustDomain, "trust-domain", coordinator.DefaultTrustDomain, "SPIFFE trust domain")
	fl.StringVar(&baseline, "baseline", string(policy.BaselineDeny), "decision for directions no policy isolates: deny or allow")
	fl.DurationVar(&c.SVIDTTL, "svid-ttl", coordinator.DefaultSVIDTTL, "lifetime of node SVIDs (renewed at half-life)")
	fl.DurationVar(&c.Keepalive, "keepalive", coordinator.DefaultKeepalive, "stream keepalive interval; open streams also check their credential again this often")
	fl.StringVar(&c.DistDir, "dist-dir", "", "`DIR` with the output of make dist (latch-OS-ARCH, SHA256SUMS), served at /dl/ to the install script; none if empty")
	fl.StringVar(&c.PublicURL, "public-url", "", "https://HOST[:PORT] nodes reach this coordinator at: baked into /install.sh and HOST added to the serving certificate (default: the address the script is fetched from)")
	fl.DurationVar(&c.FlowRetention, "flow-retention", coordinator.DefaultFlowRetention, "how long flow records are kept")
	fl.IntVar(&c.FlowMaxRows, "flow-max-rows", coordinator.DefaultFlowMaxRows, "the most flow records kept; the oldest beyond are deleted (0: no bound)")
	fl.IntVar(&c.MaxConnections, "max-connections", coordinator.DefaultMaxConnections, "the most client connections served at once; more wait until one closes")
	fl.DurationVar(&c.AuditRetention, "audit-retention", coordinator.DefaultAuditRetention, "how long audit log entries are kept (pruning is audited as one entry)")
	fl.IntVar(&c.AuditMaxRows, "audit-max-rows", coordinator.DefaultAuditMaxRows, "the most audit log entries kept; the oldest beyond are deleted (0: no bound)")
	fl.StringVar(&c.STUNListen, "stun-listen", "", "UDP address of the STUN server that tells nodes behind NAT their public endpoint (default: --listen's host, port 3478); off to disable")
	fl.StringVar(&c.MetricsListen, "metrics-listen", "", "plain HTTP address serving Prometheus /metrics, without authentication (e.g. 127.0.0.1:9470); off when empty")
	fl.BoolVar(&relayOn, "relay", true, "relay WireGuard packets between nodes that are peers in their views, over a WebSocket on the HTTPS port (for nodes with no direct path); --relay=false turns it off")
	fl.DurationVar(&c.GatewayGrace, "gateway-grace", coordinator.DefaultGatewayGrace, "after a start, how long gateways have to connect before those that have not count as offline and their sites fail over")
	fl.IntVar(&c.MaxWorkloadsPerNode, "max-workloads-per-node", coordinator.DefaultMaxWorkloadsPerNode, "the most workloads one node may register")
	fl.StringVar(&c.Spire.Socket, "spiffe-socket", "", "Workload API socket of the coordinator's own SPIRE agent (unix:///PATH/api.sock): trust SPIRE's bundle and present the coordinator's SPIRE SVID to SPIRE nodes")
	fl.StringVar(&c.Spire.BundleFile, "trust-bundle", "", "PEM file with SPIRE's CA certificates (spire-server bundle show), reloaded when it changes; instead of --spiffe-socket")
	fl.StringVar(&c.Spire.TrustDomain, "spiffe-trust-domain", "", "SPIRE's trust domain (default with --spiffe-socket: that of the coordinator's SPIRE SVID; required with --trust-bundle)")
	fl.StringVar(&c.Spire.MapFile, "spiffe-map", "", "YAML `FILE`: a list of {id: spiffe://TD/PATTERN, namespace: NS, labels: {k: v}} admitting SPIRE nodes; the first match wins, others wait for latch admin node approve")
	fl.DurationVar(&c.Spire.BundlePoll, "trust-bundle-poll", coordinator.DefaultBundlePoll, "how often --trust-bundle is checked for changes")
	return cmd
}
