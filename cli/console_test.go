package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCoordinatorConsoleAndUsers runs the real coordinator command on
// loopback: it makes the first admin (password written 0600, only its
// path logged), serves the console, and `latch admin user` manages users.
func TestCoordinatorConsoleAndUsers(t *testing.T) {
	tc := startTestCoordinator(t)
	dir, addr, log := tc.dir, tc.addr, tc.log
	pwFile := filepath.Join(dir, "admin-password")
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v; want a 0600 file", pwFile, fi, err)
	}
	pw, _ := os.ReadFile(pwFile)
	if p := strings.TrimSpace(string(pw)); len(p) < 12 || strings.Contains(log.String(), p) {
		t.Errorf("the first admin's password %q is in the log (or empty):\n%s", p, log.String())
	}
	if !strings.Contains(log.String(), "password_file="+pwFile) {
		t.Errorf("the log does not say where the first admin's password is:\n%s", log.String())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("console login page: %d", resp.StatusCode)
	}

	latch := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		args = append(args, "--coordinator", "https://"+addr, "--token-file", filepath.Join(dir, "admin.token"))
		code := Run(context.Background(), args, &out, &errb)
		return out.String() + errb.String(), code
	}
	out, code := latch("admin", "user", "create", "bob", "--role", "viewer")
	if code != 0 || !regexp.MustCompile(`user bob \(viewer\) created; password \(shown once\): \S{12,}`).MatchString(out) {
		t.Fatalf("user create: %d %s", code, out)
	}
	if out, code := latch("admin", "user", "create", "eve", "--role", "root"); code == 0 || !strings.Contains(out, "must be admin or viewer") {
		t.Errorf("bad role: %d %s", code, out)
	}
	out, code = latch("admin", "user", "list")
	if code != 0 || !regexp.MustCompile(`(?m)^admin\s+admin\s`).MatchString(out) || !regexp.MustCompile(`(?m)^bob\s+viewer\s`).MatchString(out) {
		t.Errorf("user list: %d %s", code, out)
	}
	if out, code := latch("admin", "user", "delete", "bob"); code != 0 || !strings.Contains(out, "user bob deleted") {
		t.Errorf("user delete: %d %s", code, out)
	}
	out, code = latch("admin", "apitoken", "create", "ci", "--role", "viewer")
	if code != 0 || !strings.HasPrefix(out, "latchapi.") {
		t.Fatalf("apitoken create: %d %s", code, out)
	}
	// The API token works as the CLI's token, and reads only.
	tokFile := filepath.Join(t.TempDir(), "api.token")
	os.WriteFile(tokFile, []byte(out), 0o600)
	var o, e bytes.Buffer
	base := []string{"--coordinator", "https://" + addr, "--token-file", tokFile, "--ca-file", filepath.Join(dir, "ca.crt")}
	if code := Run(context.Background(), append([]string{"admin", "node", "list"}, base...), &o, &e); code != 0 || !strings.Contains(o.String(), "IDENTITY  SPIFFE ID") {
		t.Errorf("node list with a viewer API token: %d %s %s", code, o.String(), e.String())
	}
	e.Reset()
	if code := Run(context.Background(), append([]string{"admin", "namespace", "set", "x"}, base...), &o, &e); code == 0 || !strings.Contains(e.String(), "may only read") {
		t.Errorf("namespace set with a viewer API token: %d %s", code, e.String())
	}
	if out, code := latch("admin", "apitoken", "list"); code != 0 || !strings.Contains(out, "ci") {
		t.Errorf("apitoken list: %d %s", code, out)
	}

	// Join tokens carry workload grants; a bad grant is refused before
	// anything is sent.
	if out, code := latch("admin", "token", "create", "--namespace", "prod", "--labels", "role=web",
		"--workload", "namespace=prod,labels=app=web;tier=front,name=web-*", "--workload", "namespace=prod"); code != 0 || !strings.HasPrefix(out, "latch1.") {
		t.Fatalf("token create with grants: %d %s", code, out)
	}
	if out, code := latch("admin", "token", "create", "--workload", "namespace=prod,labels=spiffe.io/id=x"); code == 0 || !strings.Contains(out, "reserved") {
		t.Errorf("token create granting a reserved label: %d %s", code, out)
	}
	if out, code := latch("admin", "token", "create", "--labels", "spiffe.io/id=x"); code == 0 || !strings.Contains(out, "reserved") {
		t.Errorf("token create with a reserved node label: %d %s", code, out)
	}
	if out, code := latch("admin", "token", "list"); code != 0 || !strings.Contains(out, "namespace=prod,labels=app=web;tier=front,name=web-* | namespace=prod") {
		t.Errorf("token list does not show the grants: %d %s", code, out)
	}
	if out, code := latch("admin", "node", "grant", "ghost", "--workload", "namespace=prod"); code == 0 || !strings.Contains(out, "not found") {
		t.Errorf("grant to a missing node: %d %s", code, out)
	}
	if out, code := latch("admin", "node", "grant", "ghost"); code == 0 || !strings.Contains(out, "nothing to grant") {
		t.Errorf("grant without grants: %d %s", code, out)
	}
}
