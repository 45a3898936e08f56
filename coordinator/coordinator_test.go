package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/policy"
	"github.com/pion/stun/v3"
)

// TestRunServesUntilCancelled runs the coordinator on loopback with a
// fresh data directory, waits until its admin API answers with the admin
// token it wrote, and checks that cancelling the context makes Run return
// nil with its listeners closed.
func TestRunServesUntilCancelled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	type addrs struct{ api, metrics net.Addr }
	listening := make(chan addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DataDir: dir, MetricsListen: "127.0.0.1:0",
			Log:      slog.New(slog.DiscardHandler),
			OnListen: func(api, metrics net.Addr) { listening <- addrs{api, metrics} }})
	}()
	var a addrs
	select {
	case a = <-listening:
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the coordinator did not listen within 60s")
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v; want it made 0700", fi, err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.crt holds no certificate")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	admin := func() (int, string, error) {
		req, _ := http.NewRequest("GET", "https://"+a.api.String()+"/v1/admin/nodes", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, body, err := admin()
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API not ready: %d %s %v", code, body, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + a.metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("metrics: %s", resp.Status)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v; want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
	for what, addr := range map[string]net.Addr{"API": a.api, "metrics": a.metrics} {
		if conn, err := net.DialTimeout("tcp", addr.String(), 5*time.Second); err == nil {
			conn.Close()
			t.Errorf("the %s listener %s still accepts connections after Run returned", what, addr)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  Config
		want string // part of the error; "" for valid
	}{
		"zero takes the defaults": {Config{}, ""},
		"everything set": {Config{Listen: "0.0.0.0:7443", DataDir: "/d", TrustDomain: "corp.test", Baseline: policy.BaselineAllow,
			SVIDTTL: 10 * time.Second, Keepalive: time.Second, PublicURL: "https://coord.corp.test:7443", FlowRetention: time.Minute,
			FlowMaxRows: 10, AuditRetention: time.Hour, AuditMaxRows: 10, MaxWorkloadsPerNode: 1, MaxConnections: 1,
			MetricsListen: "127.0.0.1:9470", STUNListen: "0.0.0.0:3478", GatewayGrace: time.Second, Spire: SpireConfig{BundleFile: "/b.pem", TrustDomain: "spire.test"}}, ""},
		"bad trust domain":       {Config{TrustDomain: "Not A Domain"}, `--trust-domain "Not A Domain"`},
		"bad baseline":           {Config{Baseline: "maybe"}, "--baseline"},
		"short SVID TTL":         {Config{SVIDTTL: time.Second}, "--svid-ttl 1s: must be at least 10s"},
		"negative keepalive":     {Config{Keepalive: -time.Second}, "--keepalive"},
		"short flow retention":   {Config{FlowRetention: time.Second}, "--flow-retention 1s: must be at least 1m"},
		"negative flow rows":     {Config{FlowMaxRows: -1}, "--flow-max-rows -1"},
		"short audit retention":  {Config{AuditRetention: time.Minute}, "--audit-retention 1m0s: must be at least 1h"},
		"too few audit rows":     {Config{AuditMaxRows: 9}, "--audit-max-rows 9: must be 0 (no bound) or at least 10"},
		"negative workloads":     {Config{MaxWorkloadsPerNode: -1}, "--max-workloads-per-node -1"},
		"negative connections":   {Config{MaxConnections: -1}, "--max-connections -1"},
		"negative gateway grace": {Config{GatewayGrace: -time.Second}, "--gateway-grace -1s: must be positive"},
		"listen without port":    {Config{Listen: "127.0.0.1"}, `--listen "127.0.0.1": want HOST:PORT`},
		"metrics without port":   {Config{MetricsListen: "localhost"}, `--metrics-listen "localhost": want HOST:PORT`},
		"STUN off":               {Config{STUNListen: "off"}, ""},
		"STUN without port":      {Config{STUNListen: "0.0.0.0"}, `--stun-listen "0.0.0.0": want HOST:PORT`},
		"STUN bad port":          {Config{STUNListen: ":70000"}, `--stun-listen ":70000": port "70000"`},
		"public URL not https":   {Config{PublicURL: "http://coord"}, `--public-url "http://coord": want https://HOST[:PORT]`},
		"SPIRE map alone":        {Config{Spire: SpireConfig{MapFile: "/m.yaml"}}, "need --spiffe-socket or --trust-bundle"},
		"SPIRE of own domain":    {Config{Spire: SpireConfig{Socket: "unix:///s", TrustDomain: "example.test"}}, "coordinator's own --trust-domain"},
		"SPIRE bundle, no td":    {Config{Spire: SpireConfig{BundleFile: "/b.pem"}}, "--trust-bundle needs --spiffe-trust-domain"},
		"SPIRE bad poll":         {Config{Spire: SpireConfig{BundleFile: "/b.pem", TrustDomain: "spire.test", BundlePoll: -1}}, "--trust-bundle-poll"},
		"SPIRE socket and files": {Config{Spire: SpireConfig{Socket: "unix:///s", BundleFile: "/b.pem"}}, "give one"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate: %v; want it valid", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate: %v; want an error containing %q", err, c.want)
			}
		})
	}
}

// TestRunServesSTUN: Run answers STUN binding requests on --stun-listen
// and stops when it returns.
func TestRunServesSTUN(t *testing.T) {
	free, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stunAddr := free.LocalAddr().String()
	free.Close()
	listening := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(t.TempDir(), "data"), STUNListen: stunAddr,
			Log: slog.New(slog.DiscardHandler), OnListen: func(net.Addr, net.Addr) { close(listening) }})
	}()
	select {
	case <-listening:
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the coordinator did not listen within 60s")
	}
	c, err := net.Dial("udp4", stunAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.Write(req.Raw)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			res := &stun.Message{Raw: buf[:n]}
			if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
				t.Fatalf("answer %x: %v, want a binding success", buf[:n], err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no STUN answer from %s: %v", stunAddr, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if l, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(stunAddr))); err != nil {
		t.Errorf("the STUN port is still held after Run returned: %v", err)
	} else {
		l.Close()
	}
}
