package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/scripts"
	"github.com/latchnet/latch/web"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type coordinatorFlags struct {
	listen, dataDir, trustDomain, baseline string
	distDir, publicURL                     string
	svidTTL                                time.Duration
	keepalive                              time.Duration
	flowRetention                          time.Duration
	flowMaxRows                            int
	maxWorkloads                           int
	auditRetention                         time.Duration
	auditMaxRows                           int
	metricsListen                          string
	maxConnections                         int
	spiffe                                 spiffeFlags
}

// defaultAuditRetention is how long audit entries are kept by default.
const defaultAuditRetention = 90 * 24 * time.Hour

func newCoordinatorCmd() *cobra.Command {
	var f coordinatorFlags
	cmd := &cobra.Command{
		Use:   "coordinator --listen ADDR --data-dir DIR --trust-domain TD",
		Short: "Run the coordinator: SPIFFE CA, store, policy, views, node and admin APIs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCoordinator(cmd.Context(), f, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:7443", "HTTPS address to listen on")
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/latch", "directory for the CA, the database and the admin token")
	fl.StringVar(&f.trustDomain, "trust-domain", "example.test", "SPIFFE trust domain")
	fl.StringVar(&f.baseline, "baseline", string(policy.BaselineDeny), "decision for directions no policy isolates: deny or allow")
	fl.DurationVar(&f.svidTTL, "svid-ttl", time.Hour, "lifetime of node SVIDs (renewed at half-life)")
	fl.DurationVar(&f.keepalive, "keepalive", 10*time.Second, "stream keepalive interval; open streams also check their credential again this often")
	fl.StringVar(&f.distDir, "dist-dir", "", "`DIR` with the output of make dist (latch-OS-ARCH, SHA256SUMS), served at /dl/ to the install script; none if empty")
	fl.StringVar(&f.publicURL, "public-url", "", "https://HOST[:PORT] nodes reach this coordinator at: baked into /install.sh and HOST added to the serving certificate (default: the address the script is fetched from)")
	fl.DurationVar(&f.flowRetention, "flow-retention", 24*time.Hour, "how long flow records are kept")
	fl.IntVar(&f.flowMaxRows, "flow-max-rows", 1000000, "the most flow records kept; the oldest beyond are deleted (0: no bound)")
	fl.IntVar(&f.maxConnections, "max-connections", api.DefaultLimits.MaxConnections, "the most client connections served at once; more wait until one closes")
	fl.DurationVar(&f.auditRetention, "audit-retention", defaultAuditRetention, "how long audit log entries are kept (pruning is audited as one entry)")
	fl.IntVar(&f.auditMaxRows, "audit-max-rows", 1000000, "the most audit log entries kept; the oldest beyond are deleted (0: no bound)")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "plain HTTP address serving Prometheus /metrics, without authentication (e.g. 127.0.0.1:9470); off when empty")
	fl.IntVar(&f.maxWorkloads, "max-workloads-per-node", state.DefaultMaxWorkloadsPerNode, "the most workloads one node may register")
	f.spiffe.register(cmd)
	return cmd
}

func runCoordinator(ctx context.Context, f coordinatorFlags, logOut interface{ Write([]byte) (int, error) }) error {
	log := slog.New(slog.NewTextHandler(logOut, nil))
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err)
	}
	baseline, err := policy.ParseBaseline(f.baseline)
	if err != nil {
		return fmt.Errorf("--baseline: %w", err)
	}
	if f.svidTTL < 10*time.Second {
		return fmt.Errorf("--svid-ttl %v: must be at least 10s", f.svidTTL)
	}
	if f.flowRetention == 0 {
		f.flowRetention = 24 * time.Hour
	}
	if f.flowRetention < time.Minute {
		return fmt.Errorf("--flow-retention %v: must be at least 1m", f.flowRetention)
	}
	if f.maxWorkloads < 0 {
		return fmt.Errorf("--max-workloads-per-node %d: must be at least 1", f.maxWorkloads)
	}
	if f.flowMaxRows < 0 {
		return fmt.Errorf("--flow-max-rows %d: must be 0 (no bound) or more", f.flowMaxRows)
	}
	if f.maxConnections < 0 {
		return fmt.Errorf("--max-connections %d: must be positive (0: the default, %d)", f.maxConnections, api.DefaultLimits.MaxConnections)
	}
	if f.auditRetention == 0 {
		f.auditRetention = defaultAuditRetention
	}
	if f.auditRetention < time.Hour {
		return fmt.Errorf("--audit-retention %v: must be at least 1h", f.auditRetention)
	}
	if f.auditMaxRows != 0 && f.auditMaxRows < 10 {
		return fmt.Errorf("--audit-max-rows %d: must be 0 (no bound) or at least 10", f.auditMaxRows)
	}
	if f.metricsListen != "" {
		if _, _, err := net.SplitHostPort(f.metricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: want HOST:PORT: %w", f.metricsListen, err)
		}
	}
	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want HOST:PORT: %w", f.listen, err)
	}
	var publicHost string
	if f.publicURL != "" {
		if !scripts.ValidURL(f.publicURL) {
			return fmt.Errorf("--public-url %q: want https://HOST[:PORT], e.g. https://coord.example.com:7443", f.publicURL)
		}
		u, err := url.Parse(f.publicURL)
		if err != nil {
			return fmt.Errorf("--public-url %q: %w", f.publicURL, err)
		}
		publicHost = u.Hostname()
	}
	if f.distDir != "" {
		if _, err := os.Stat(filepath.Join(f.distDir, "SHA256SUMS")); err != nil {
			log.Warn("the install script will find no binaries: --dist-dir has no SHA256SUMS (build it with make dist)", "dist_dir", f.distDir, "err", err)
		}
	}
	if err := prepareDataDir(f.dataDir, os.Geteuid(), log); err != nil {
		return err
	}
	authority, err := ca.Open(f.dataDir, td, ca.SystemClock{})
	if err != nil {
		return err
	}
	db, err := store.OpenSQLite(filepath.Join(f.dataDir, "latch.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	adminToken, err := adminToken(f.dataDir, log)
	if err != nil {
		return err
	}
	spire, err := f.spiffe.open(ctx, td, log)
	if err != nil {
		return err
	}
	defer spire.close()
	st, err := state.Open(ctx, db, fanout.New(), state.Options{Baseline: baseline, Log: log, SpiffeMap: spire.mapping,
		MaxWorkloadsPerNode: f.maxWorkloads})
	if err != nil {
		return err
	}
	if _, err := web.EnsureFirstAdmin(ctx, st, f.dataDir, log); err != nil {
		return err
	}
	console := web.New(web.Config{State: st, Flows: web.StoredFlows{State: st}, Log: log})
	srv := api.New(api.Config{State: st, CA: authority, AdminTokenHash: api.AdminTokenHash(adminToken),
		SVIDTTL: f.svidTTL, Keepalive: f.keepalive, Log: log, Extensions: []func(*echo.Echo, *echo.Group){console.Mount},
		InstallScript: scripts.InstallScript, PublicURL: f.publicURL, DistDir: f.distDir, Spiffe: spire.trust,
		Limits: api.Limits{MaxConnections: f.maxConnections}})
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	} else if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
	}
	// The serving certificate lives as long as the process, up to 30 days;
	// restart the coordinator to renew it.
	dnsNames := []string{"localhost"}
	if ip := net.ParseIP(publicHost); ip != nil {
		ips = append(ips, ip)
	} else if publicHost != "" {
		dnsNames = append(dnsNames, publicHost)
	}
	svid, err := authority.ServerSVID(dnsNames, ips, 30*24*time.Hour)
	if err != nil {
		return err
	}
	tlsCfg := api.TLSConfig(authority, svid)
	if spire.svids != nil {
		tlsCfg = api.TLSConfigWithSPIRE(authority, svid, spire.svids)
	}
	ln, err := srv.Listen(f.listen, tlsCfg)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", f.listen, err)
	}
	hs := srv.HTTPServer(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	log.Info("coordinator listening", "addr", ln.Addr().String(), "trust_domain", td.String(),
		"ca_fingerprint", authority.Fingerprint(), "admin_token_file", filepath.Join(f.dataDir, "admin.token"),
		"console", "https://"+ln.Addr().String()+web.Prefix)
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	if f.metricsListen != "" {
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", f.metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", srv.MetricsHandler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
		defer ms.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
		go func() { errc <- ms.Serve(mln) }()
	}
	go pruneFlows(ctx, st, f.flowRetention, f.flowMaxRows, log)
	go pruneAudit(ctx, st, f.auditRetention, f.auditMaxRows, log)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return nil
}

// pruneFlows deletes expired and surplus flow records at start and every
// minute until ctx ends.
func pruneFlows(ctx context.Context, st *state.State, retention time.Duration, maxRows int, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if n, err := st.PruneFlows(ctx, retention, maxRows); err != nil && ctx.Err() == nil {
			log.Warn("pruning flow records", "err", err)
		} else if n > 0 {
			log.Info("pruned flow records", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneAudit deletes expired and surplus audit entries (recording that in
// the audit log) at start and every minute until ctx ends.
func pruneAudit(ctx context.Context, st *state.State, retention time.Duration, maxRows int, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if n, err := st.PruneAudit(ctx, retention, maxRows); err != nil && ctx.Err() == nil {
			log.Warn("pruning the audit log", "err", err)
		} else if n > 0 {
			log.Info("pruned the audit log", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// adminToken reads DIR/admin.token, creating it (0600) on first start.
func adminToken(dir string, log *slog.Logger) (string, error) {
	path := filepath.Join(dir, "admin.token")
	data, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(data)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("%s is empty: delete it to have a new admin token made", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the admin token: %w", err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the admin token: %w", err)
	}
	log.Info("admin API token created", "file", path)
	return tok, nil
}
