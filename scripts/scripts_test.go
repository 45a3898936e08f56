package scripts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/internal/readme"
	"github.com/latchnet/latch/internal/tracetest"
)

func TestInstallScriptBakesTheURL(t *testing.T) {
	for _, u := range []string{"https://coord.example:7443", "https://198.18.0.1:7443", "https://[fd00::1]:7443", "https://coord"} {
		got, err := InstallScript(u)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if !bytes.Contains(got, []byte("\ndefault_coordinator='"+u+"'\n")) || bytes.Contains(got, []byte("\ndefault_coordinator=''\n")) {
			t.Errorf("%s: URL not baked in", u)
		}
		if len(got) != len(installScript)+len(u) {
			t.Errorf("%s: more than the one line changed", u)
		}
	}
	for _, u := range []string{"", "http://coord:7443", "https://coord:7443/path", "https://x';rm -rf /;'", "https://a b", "https://coord:7443\n", "https://$(id)", "https://user@coord"} {
		if _, err := InstallScript(u); err == nil || !strings.Contains(err.Error(), "want https://HOST[:PORT]") {
			t.Errorf("%q: %v, want refused", u, err)
		}
	}
}

// unitInScript returns the heredoc that install.sh's write_unit writes.
func unitInScript(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)\nwrite_unit\(\) \{\n\tcat >"\$1" <<'EOF'\n(.*?)\nEOF\n\}`).FindStringSubmatch(installScript)
	if m == nil {
		t.Fatal("install.sh: no write_unit heredoc")
	}
	return m[1] + "\n"
}

func TestNodeUnitIsTheScriptsUnit(t *testing.T) {
	pkg, err := os.ReadFile("../packaging/systemd/latch-node.service")
	if err != nil {
		t.Fatal(err)
	}
	if got := unitInScript(t); got != string(pkg) {
		t.Errorf("the unit install.sh writes differs from packaging/systemd/latch-node.service: keep them the same\n--- install.sh\n%s\n--- packaging\n%s", got, pkg)
	}
}

// TestOneBuildCommand checks that the Makefile and the Dockerfile build
// only through scripts/build.sh (dist.sh runs it per platform), so that the
// binary CI builds is the image's.
func TestOneBuildCommand(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	dist, err := os.ReadFile("dist.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Builds of latch itself; the SPIRE tools module (tools/spire, for the
	// SPIRE e2e test) is built on its own.
	goBuild := regexp.MustCompile(`(?m)^[^#\n]*(\bgo|\$\(GO\)) build\b.*$`)
	for name, text := range map[string][]byte{"Dockerfile": df, "Makefile": mk, "scripts/dist.sh": dist} {
		for _, loc := range goBuild.FindAll(text, -1) {
			if !strings.Contains(string(loc), "tools/spire") {
				t.Errorf("%s runs go build itself (%q): build through scripts/build.sh", name, loc)
			}
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM `).FindAll(df, -1)
	if len(froms) != 2 {
		t.Errorf("Dockerfile: %d stages, want a build stage and a runtime stage", len(froms))
	}
	for _, want := range []string{"./scripts/dist.sh /dist", "iproute2", `ENTRYPOINT ["/usr/local/bin/latch"]`, `CMD ["coordinator"`} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !bytes.Contains(mk, []byte("./scripts/build.sh $(BIN)")) || !bytes.Contains(mk, []byte("./scripts/dist.sh dist")) {
		t.Error("Makefile: make build and make dist must run scripts/build.sh and scripts/dist.sh")
	}
	if !bytes.Contains(dist, []byte(`"$here/build.sh"`)) {
		t.Error("scripts/dist.sh must build through build.sh")
	}
}

// TestBuildScript builds latch with scripts/build.sh, as the Dockerfile
// does, and checks the binary is static and says its version.
func TestBuildScript(t *testing.T) {
	out := filepath.Join(t.TempDir(), "latch")
	cmd := exec.Command("./build.sh", out)
	cmd.Env = append(os.Environ(), "VERSION=v9.9.9-test", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, b)
	}
	b, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "latch v9.9.9-test" {
		t.Errorf("latch version: %v %q, want \"latch v9.9.9-test\"", err, b)
	}
	if runtime.GOOS != "linux" {
		return
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): CGO_ENABLED=0 is missing", p.Type)
		}
	}
}

func TestInstallScriptRefusesBadInputAndHalfDownloads(t *testing.T) {
	run := func(script string, args ...string) (string, error) {
		cmd := exec.Command("sh", append([]string{"-s", "--"}, args...)...)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(installScript, "--bogus")
	if err == nil || !strings.Contains(out, "unknown option --bogus") {
		t.Errorf("--bogus: %v %q", err, out)
	}
	out, err = run(installScript, "--token")
	if err == nil || !strings.Contains(out, "--token needs a value") {
		t.Errorf("--token without a value: %v %q", err, out)
	}
	// A download cut anywhere runs nothing: sh reads the whole script (one
	// compound command) before it runs any of it.
	for _, frac := range []int{10, 30, 50, 70, 90, 99} {
		cut := installScript[:len(installScript)*frac/100]
		out, err := run(cut, "--bogus") // harmless if it ran: it stops at parsing
		if strings.Contains(out, "latch install:") || (err == nil && strings.Contains(cut, "\n{\n")) {
			t.Errorf("the script cut at %d%% ran: %v %q", frac, err, out)
		}
	}
}

// testCA is a self-signed CA with its key.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key}
}

func (c testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

// pin is the token's last part for this CA: hex SHA-256 of its SPKI.
func (c testCA) pin() string {
	s := sha256.Sum256(c.cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

// serverCert is a serving certificate for 127.0.0.1 and localhost.
func (c testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeCoordinator serves files over TLS on loopback with cert, as a
// coordinator or a man in the middle would.
func fakeCoordinator(t *testing.T, cert tls.Certificate, files map[string][]byte) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// evilBinary is what the downloads hold in these tests: a program that
// leaves a mark when the script runs it (`latch version`), and fails, so
// that the script stops there.
func evilBinary(mark string) []byte {
	return []byte("#!/bin/sh\necho ran >" + mark + "\nexit 1\n")
}

func dist(bin []byte) map[string][]byte {
	s := sha256.Sum256(bin)
	name := "latch-linux-" + runtime.GOARCH
	return map[string][]byte{
		"/dl/" + name:    bin,
		"/dl/SHA256SUMS": []byte(hex.EncodeToString(s[:]) + "  " + name + "\n"),
	}
}

func with(m map[string][]byte, path string, b []byte) map[string][]byte {
	out := map[string][]byte{path: b}
	for k, v := range m {
		if k != path {
			out[k] = v
		}
	}
	return out
}

// runAsRoot runs install.sh with args as root of a user namespace (so the
// test needs no root) in a mount namespace whose /usr/local, /var/lib,
// /run and /etc/systemd are empty tmpfs: should the script get further than
// it must, it writes nothing on the machine. env is added to the
// environment; TMPDIR is a directory of the test, returned with the output.
func runAsRoot(t *testing.T, trace bool, env []string, args ...string) scriptRun {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("runs the script in Linux namespaces")
	}
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "true").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("unshare --user --map-root-user: %v %s", err, out)
		}
		t.Skipf("cannot make a user namespace here: %v %s", err, out)
	}
	tmp := t.TempDir()
	argv := []string{"unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`for d in /usr/local /var/lib /run /etc/systemd; do mount -t tmpfs tmpfs "$d" || exit 1; done; exec sh -s -- "$@"`, "sh"}
	argv = append(argv, args...)
	var read func() tracetest.Trace
	if trace {
		argv, read = tracetest.Wrap(t, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(installScript)
	cmd.Env = append(append(os.Environ(), "TMPDIR="+tmp, "LATCH_TOKEN="), env...)
	out, err := cmd.CombinedOutput()
	return scriptRun{string(out), tmp, read, err}
}

// scriptRun is what a run of install.sh left: its output, its TMPDIR, its
// trace (if asked for) and its error.
type scriptRun struct {
	out, tmp string
	trace    func() tracetest.Trace
	err      error
}

// TestInstallScriptTrustsOnlyThePinnedCA reproduces the man in the middle
// between a new node and its coordinator: /ca.pem served as the real CA
// (whose hash is in the token) followed by the attacker's CA, and
// SHA256SUMS and a binary served under a certificate of the attacker's CA.
// The script must trust the pinned certificate alone, and refuse a ca.pem
// that is anything but exactly that one certificate.
func TestInstallScriptTrustsOnlyThePinnedCA(t *testing.T) {
	real, evil := newTestCA(t, "real"), newTestCA(t, "attacker")
	token := "latch1.abcdefgh.s3cr3t." + real.pin()
	key, _ := x509.MarshalPKCS8PrivateKey(evil.key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	const refused = "refusing it: it must hold the coordinator's CA certificate and nothing else"
	// The real CA's public key in a certificate the attacker signed: the
	// hash matches, but the CA never made it.
	forgedTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "real"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign}
	forgedDER, err := x509.CreateCertificate(rand.Reader, forgedTmpl, forgedTmpl, real.key.Public(), evil.key)
	if err != nil {
		t.Fatal(err)
	}
	forged := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: forgedDER})
	for _, tc := range []struct {
		name   string
		ca     []byte
		server testCA
		want   string // in the output
		ran    bool   // the downloaded binary ran
	}{
		{"real CA then the attacker's, attacker's server", append(real.pem(), evil.pem()...), evil, refused, false},
		{"real CA then the attacker's, real server", append(real.pem(), evil.pem()...), real, refused, false},
		{"attacker's CA then the real one", append(evil.pem(), real.pem()...), evil, refused, false},
		{"real CA twice", append(real.pem(), real.pem()...), real, refused, false},
		{"real CA and a private key", append(real.pem(), keyPEM...), real, refused, false},
		{"a private key and the real CA", append(keyPEM, real.pem()...), real, refused, false},
		{"real CA and trailing text", append(real.pem(), "# more\n"...), real, refused, false},
		{"text and the real CA", append([]byte("hello\n"), real.pem()...), real, refused, false},
		{"real CA with CRLF", bytes.ReplaceAll(real.pem(), []byte("\n"), []byte("\r\n")), real, refused, false},
		{"real CA in DER", real.cert.Raw, real, refused, false},
		{"empty", nil, real, refused, false},
		{"the attacker's CA alone", evil.pem(), evil, "is not the one the token was made for", false},
		{"the real CA's key in a certificate it did not sign", forged, real, "is not a valid self-signed CA certificate", false},
		{"real CA alone, attacker's server", real.pem(), evil, "fetching https://127.0.0.1", false},
		// The check lets the real thing through: the binary runs.
		{"real CA alone, real server", real.pem(), real, "does not run on this machine", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "ran")
			url := fakeCoordinator(t, tc.server.serverCert(t), with(dist(evilBinary(mark)), "/ca.pem", tc.ca))
			r := runAsRoot(t, false, []string{"LATCH_TOKEN=" + token}, "--coordinator", url)
			out, tmp, err := r.out, r.tmp, r.err
			t.Logf("%s", out)
			if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "nothing was changed") {
				t.Errorf("got %v, want a failure saying %q", err, tc.want)
			}
			if _, err := os.Stat(mark); (err == nil) != tc.ran {
				t.Errorf("the downloaded binary ran: %v, want %v", err == nil, tc.ran)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left in TMPDIR: %v", left)
			}
		})
	}
}

// TestInstallScriptTakesTheTokenOutOfArgv: the join token comes from
// LATCH_TOKEN or --token-file, never reaches a command line, and the
// script's temporary files are in a private directory.
func TestInstallScriptTakesTheTokenOutOfArgv(t *testing.T) {
	real := newTestCA(t, "real")
	secret := "s3cr3tXYZsecret"
	token := "latch1.abcdefgh." + secret + "." + real.pin()
	mark := filepath.Join(t.TempDir(), "ran")
	url := fakeCoordinator(t, real.serverCert(t), with(dist(evilBinary(mark)), "/ca.pem", real.pem()))
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)

	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		visible bool // the secret is on a command line
	}{
		{"LATCH_TOKEN", []string{"LATCH_TOKEN=" + token}, nil, false},
		{"--token-file", nil, []string{"--token-file", tokenFile}, false},
		// The control: what this test catches.
		{"--token", nil, []string{"--token", token}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(mark)
			r := runAsRoot(t, true, tc.env, append([]string{"--coordinator", url}, tc.args...)...)
			out, tmp, err, read := r.out, r.tmp, r.err, r.trace
			t.Logf("%s", out)
			if _, serr := os.Stat(mark); serr != nil || !strings.Contains(out, "does not run on this machine") {
				t.Fatalf("the token was not taken (%v): %v", serr, err)
			}
			tr := read()
			if len(tr.Execs) < 5 {
				t.Fatalf("the trace holds %d programs run: not a trace of the script", len(tr.Execs))
			}
			if e := tr.ExecsWith(secret); (len(e) > 0) != tc.visible {
				t.Errorf("the token's secret is on a command line: %v, want %v:\n%s", len(e) > 0, tc.visible, strings.Join(e, "\n"))
			}
			if w := tr.PublicWritesUnder(tmp); len(w) > 0 {
				t.Errorf("files written outside a private (0700) directory: %v", w)
			}
			if len(tr.Dirs) == 0 {
				t.Error("no temporary directory was made: not a trace of the script")
			}
		})
	}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no such token file", nil, []string{"--token-file", tokenFile + ".missing"}, "--token-file " + tokenFile + ".missing: cannot read it"},
		{"both flags", nil, []string{"--token", token, "--token-file", tokenFile}, "give the token once"},
		{"a token with a space", []string{"LATCH_TOKEN=latch1.a b.c." + real.pin()}, nil, "want latch1.<id>.<secret>.<ca-hash>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runAsRoot(t, false, tc.env, append([]string{"--coordinator", url}, tc.args...)...)
			out, err := r.out, r.err
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("%v, want a refusal saying %q:\n%s", err, tc.want, out)
			}
		})
	}
}

// readmeInstallCommand is the install one-liner of README.md ("Install on a
// server or laptop"; the console shows the same), joined into one line,
// for coord and token.
func readmeInstallCommand(t *testing.T, coord, token string) string {
	t.Helper()
	cmd, err := readme.InstallCommand("..", coord, token)
	if err != nil {
		t.Fatal(err)
	}
	return readme.OneLine(cmd)
}

// TestInstallOneLiner runs README's install one-liner against a man in the
// middle that serves the real CA followed by its own and an install script
// of its own: nothing it serves may run. Against the real coordinator the
// served script runs, with the token in its environment. (sudo, which the
// one-liner ends with, is replaced by sh here; e2e TestInstallScript runs
// it as it is.)
func TestInstallOneLiner(t *testing.T) {
	real, evil := newTestCA(t, "real"), newTestCA(t, "attacker")
	token := "latch1.abcdefgh.s3cr3t." + real.pin()
	for _, tc := range []struct {
		name   string
		ca     []byte
		server testCA
		ran    bool
	}{
		{"real CA then the attacker's, attacker's server", append(real.pem(), evil.pem()...), evil, false},
		{"the attacker's CA then the real one", append(evil.pem(), real.pem()...), evil, false},
		{"the attacker's CA", evil.pem(), evil, false},
		{"real CA, attacker's server", real.pem(), evil, false},
		{"real CA, real server", real.pem(), real, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "ran")
			url := fakeCoordinator(t, tc.server.serverCert(t), map[string][]byte{
				"/ca.pem":     tc.ca,
				"/install.sh": []byte(`printf '%s' "$LATCH_TOKEN" >` + mark + "\n"),
			})
			cmd := readmeInstallCommand(t, url, token)
			if !strings.HasSuffix(cmd, " | sudo --preserve-env=LATCH_TOKEN sh)") {
				t.Fatalf("the one-liner does not end by running the script with sudo, keeping LATCH_TOKEN: %s", cmd)
			}
			cmd = strings.TrimSuffix(cmd, "sudo --preserve-env=LATCH_TOKEN sh)") + "sh)"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, "sh", "-c", cmd)
			c.Env = append(os.Environ(), "LATCH_TOKEN=", "TMPDIR="+t.TempDir())
			out, err := c.CombinedOutput()
			t.Logf("%v %s", err, out)
			got, rerr := os.ReadFile(mark)
			if ran := rerr == nil; ran != tc.ran || (ran && string(got) != token) {
				t.Errorf("the served script ran: %v (with LATCH_TOKEN %q), want %v", ran, got, tc.ran)
			}
			// (When curl refuses the server, sh gets an empty script and
			// exits 0; curl has said why.)
			if !tc.ran && err == nil && !strings.Contains(string(out), "curl: (60)") {
				t.Error("the one-liner said nothing of the refusal")
			}
		})
	}
}

// unitSettings returns the [Service] settings of a unit file, each key's
// values in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestUnitsAreHardened keeps the sandboxing of the packaged units (make
// lint runs scripts/verify-units.sh on them, which checks that systemd
// parses every setting; e2e TestNodeUnitCapabilities that the node agent
// works with its capabilities): a setting dropped or loosened fails here.
func TestUnitsAreHardened(t *testing.T) {
	common := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"ProtectProc": "invisible", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
		"UMask": "0077", "StateDirectoryMode": "0700",
	}
	for unit, extra := range map[string]map[string]string{
		"latch-node.service": {
			"CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_BPF CAP_PERFMON",
			"AmbientCapabilities":     "CAP_NET_ADMIN CAP_BPF CAP_PERFMON",
			"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
			"DeviceAllow":             "/dev/net/tun rw",
		},
		"latch-coordinator.service": {
			"CapabilityBoundingSet": "", "AmbientCapabilities": "", "DynamicUser": "yes",
			"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes",
			"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
			"SystemCallFilter":        "@system-service|~@privileged @resources",
		},
	} {
		got := unitSettings(t, filepath.Join("..", "packaging", "systemd", unit))
		for k, want := range common {
			if v := strings.Join(got[k], "|"); v != want {
				t.Errorf("%s: %s=%q, want %q", unit, k, v, want)
			}
		}
		for k, want := range extra {
			if v := strings.Join(got[k], "|"); v != want || got[k] == nil {
				t.Errorf("%s: %s=%q, want %q", unit, k, v, want)
			}
		}
	}
}
