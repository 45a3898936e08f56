package cli

import (
	"strings"
	"testing"
)

// TestAdminSite: `latch admin site list|set|delete` against a real
// coordinator.
func TestAdminSite(t *testing.T) {
	_, latch := latchAgainst(t)
	if out, errOut, code := latch("admin", "site", "list"); code != 0 || !strings.Contains(out, "no sites") {
		t.Fatalf("list of none: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := latch("admin", "site", "set", "site-eu/db", "--labels", "role=db", "--cidr", "198.19.1.0/24,198.19.5.0/25",
		"--port", "postgres=5432/tcp", "--port", "9100"); code != 0 || out != "site site-eu/db set: 198.19.1.0/24,198.19.5.0/25\n" {
		t.Fatalf("set: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := latch("admin", "site", "set", "site-eu/office", "--cidr", "198.19.2.0/24"); code != 0 {
		t.Fatalf("set office: %d %q", code, errOut)
	}
	out, errOut, code := latch("admin", "site", "list")
	want := `NAMESPACE  NAME    CIDRS                        LABELS   PORTS
site-eu    db      198.19.1.0/24,198.19.5.0/25  role=db  postgres=5432/TCP,9100/TCP
site-eu    office  198.19.2.0/24                -        -
`
	if code != 0 || out != want {
		t.Fatalf("list: %d %q\n%s\nwant\n%s", code, errOut, out, want)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"set", "site-eu/x", "--cidr", "198.19.1.128/25"}, "198.19.1.128/25 overlaps 198.19.1.0/24 of site site-eu/db"},
		{[]string{"set", "site-eu/x", "--cidr", "198.19.9.5/24"}, "198.19.9.5/24 is not a network address: write 198.19.9.0/24"},
		{[]string{"set", "site-eu/x"}, "--cidr: give the site's IPv4 prefixes"},
		{[]string{"set", "x", "--cidr", "198.19.9.0/24"}, `"x": name the site as NAMESPACE/NAME`},
		{[]string{"set", "site-eu/x", "--cidr", "198.19.9.0/24", "--port", "pg=x"}, `--port "pg=x": want [NAME=]PORT[/PROTOCOL]`},
		{[]string{"delete", "site-eu/nope"}, `site "site-eu/nope": not found`},
	} {
		if _, errOut, code := latch(append([]string{"admin", "site"}, c.args...)...); code == 0 || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: %d %q, want %q", c.args, code, errOut, c.msg)
		}
	}
	if out, errOut, code := latch("admin", "site", "delete", "site-eu/office"); code != 0 || out != "site site-eu/office deleted\n" {
		t.Fatalf("delete: %d %q %q", code, out, errOut)
	}
	if out, _, _ := latch("admin", "site", "list"); strings.Contains(out, "office") {
		t.Errorf("list after delete:\n%s", out)
	}
}
