// Package coordinator runs the Latch coordinator, as agent.Run runs the
// node: from one Config it opens the data directory (embedded CA, SQLite
// store, admin token, the console's first admin), the optional SPIRE
// trust and the state layer, and serves the node and admin APIs (package
// api) with the web console (package web) mounted on them, and optionally
// Prometheus metrics, until its context ends. It also prunes old flow
// records and audit entries.
//
// Only package cli (for cmd/latch), and tests, import it. It imports web
// (the console mounts on its server); web must not import it.
package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/coordinator/stun"
	"github.com/latchnet/latch/scripts"
	"github.com/latchnet/latch/web"
)

// shutdownGrace is how long Run lets requests finish once its context ends.
const shutdownGrace = 5 * time.Second

// Run validates cfg, runs the coordinator until ctx ends, then shuts it
// down: it returns nil after a shutdown, or the error that stopped it.
func Run(ctx context.Context, cfg Config) error {
	c, err := cfg.check()
	if err != nil {
		return err
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.DistDir != "" {
		if _, err := os.Stat(filepath.Join(c.DistDir, "SHA256SUMS")); err != nil {
			log.Warn("the install script will find no binaries: --dist-dir has no SHA256SUMS (build it with make dist)", "dist_dir", c.DistDir, "err", err)
		}
	}
	if err := prepareDataDir(c.DataDir, os.Geteuid(), log); err != nil {
		return err
	}
	authority, err := ca.Open(c.DataDir, c.td, ca.SystemClock{})
	if err != nil {
		return err
	}
	db, err := store.OpenSQLite(filepath.Join(c.DataDir, "latch.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	adminToken, err := adminToken(c.DataDir, log)
	if err != nil {
		return err
	}
	spire, err := c.Spire.open(ctx, c.td, log)
	if err != nil {
		return err
	}
	defer spire.close()
	st, err := state.Open(ctx, db, fanout.New(), state.Options{Baseline: c.Baseline, Log: log, SpiffeMap: spire.mapping,
		MaxWorkloadsPerNode: c.MaxWorkloadsPerNode, GatewayGrace: c.GatewayGrace})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := web.EnsureFirstAdmin(ctx, st, c.DataDir, log); err != nil {
		return err
	}
	// The STUN server first: its port goes into every register response.
	var stunConn *net.UDPConn
	stunPort := 0
	if c.stunListen != "" {
		ua, err := net.ResolveUDPAddr("udp", c.stunListen)
		if err != nil {
			return fmt.Errorf("--stun-listen %s: %w", c.stunListen, err)
		}
		if stunConn, err = net.ListenUDP("udp", ua); err != nil {
			return fmt.Errorf("--stun-listen %s: %w; pass --stun-listen off to run without it", c.stunListen, err)
		}
		defer stunConn.Close()
		stunPort = stunConn.LocalAddr().(*net.UDPAddr).Port
	}
	console := web.New(web.Config{State: st, Flows: web.StoredFlows{State: st}, Log: log})
	srv := api.New(api.Config{State: st, CA: authority, AdminTokenHash: api.AdminTokenHash(adminToken),
		SVIDTTL: c.SVIDTTL, Keepalive: c.Keepalive, Log: log, Extensions: []func(*echo.Echo, *echo.Group){console.Mount},
		InstallScript: scripts.InstallScript, PublicURL: c.PublicURL, DistDir: c.DistDir, Spiffe: spire.trust,
		Limits: api.Limits{MaxConnections: c.MaxConnections}, NoRelay: c.NoRelay, STUNPort: stunPort})
	// The serving certificate lives as long as the process, up to 30 days;
	// restart the coordinator to renew it.
	ips, dnsNames := servingNames(c.listenHost, c.publicHost)
	svid, err := authority.ServerSVID(dnsNames, ips, 30*24*time.Hour)
	if err != nil {
		return err
	}
	tlsCfg := api.TLSConfig(authority, svid)
	if spire.svids != nil {
		tlsCfg = api.TLSConfigWithSPIRE(authority, svid, spire.svids)
	}
	ln, err := srv.Listen(c.Listen, tlsCfg)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	var mln net.Listener
	if c.MetricsListen != "" {
		if mln, err = net.Listen("tcp", c.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen %s: %w", c.MetricsListen, err)
		}
	}

	hs := srv.HTTPServer(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	log.Info("coordinator listening", "addr", ln.Addr().String(), "trust_domain", c.td.String(),
		"ca_fingerprint", authority.Fingerprint(), "admin_token_file", filepath.Join(c.DataDir, "admin.token"),
		"console", "https://"+ln.Addr().String()+web.Prefix)
	errc := make(chan error, 3)
	go func() { errc <- hs.Serve(ln) }()
	if stunConn != nil {
		log.Info("STUN listening", "addr", stunConn.LocalAddr().String())
		sctx, stopSTUN := context.WithCancel(ctx)
		defer stopSTUN()
		go func() {
			if err := stun.Serve(sctx, stunConn, log); err != nil {
				errc <- err
			}
		}()
	}
	var metricsAddr net.Addr
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", srv.MetricsHandler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
		defer ms.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
		metricsAddr = mln.Addr()
		go func() { errc <- ms.Serve(mln) }()
	}
	pctx, stopPruning := context.WithCancel(ctx)
	var pruning sync.WaitGroup
	pruning.Add(2)
	// Expired and surplus flow records and audit entries are deleted (the
	// pruning of the audit log is audited).
	go func() {
		defer pruning.Done()
		pruneEvery(pctx, "flow records", func(ctx context.Context) (int64, error) {
			return st.PruneFlows(ctx, c.FlowRetention, c.FlowMaxRows)
		}, log)
	}()
	go func() {
		defer pruning.Done()
		pruneEvery(pctx, "the audit log", func(ctx context.Context) (int64, error) {
			return st.PruneAudit(ctx, c.AuditRetention, c.AuditMaxRows)
		}, log)
	}()
	defer pruning.Wait()
	defer stopPruning()
	if c.OnListen != nil {
		c.OnListen(ln.Addr(), metricsAddr)
	}

	select {
	case err := <-errc:
		hs.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Streams outlive the grace: cut them.
		hs.Close()
	}
	return nil
}

// servingNames are the addresses and DNS names of the serving
// certificate: loopback and localhost, the listen address (or, when it is
// unspecified, every interface address), and the public URL's host.
func servingNames(listenHost, publicHost string) ([]net.IP, []string) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(listenHost); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	} else if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
	}
	dnsNames := []string{"localhost"}
	if ip := net.ParseIP(publicHost); ip != nil {
		ips = append(ips, ip)
	} else if publicHost != "" {
		dnsNames = append(dnsNames, publicHost)
	}
	return ips, dnsNames
}

// pruneEvery runs prune at start and every minute until ctx ends, and
// logs what it deleted of what ("flow records", "the audit log").
func pruneEvery(ctx context.Context, what string, prune func(context.Context) (int64, error), log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if n, err := prune(ctx); err != nil && ctx.Err() == nil {
			log.Warn("pruning "+what, "err", err)
		} else if n > 0 {
			log.Info("pruned "+what, "deleted", n)
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
