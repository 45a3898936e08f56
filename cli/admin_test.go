package cli

import (
	"bytes"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
)

func TestWriteNodeList(t *testing.T) {
	seen := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	var out bytes.Buffer
	err := writeNodeList(&out, []adminapi.Node{
		{Name: "db-1", Namespace: "prod", IP: netip.MustParseAddr("100.64.0.2"), Labels: map[string]string{"role": "db", "a": "b"}, LastSeen: seen,
			Identity: adminapi.IdentityCA, SpiffeID: "spiffe://example.test/latch/node/db-1"},
		{Name: "laptop", Namespace: "dev", IP: netip.MustParseAddr("100.64.0.3"), Labels: map[string]string{"role": "client"}, LastSeen: seen,
			Identity: adminapi.IdentitySPIRE, SpiffeID: "spiffe://spire.test/dev/laptop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^NAME\s+NAMESPACE\s+IP\s+LABELS\s+LAST SEEN\s+IDENTITY\s+SPIFFE ID$`).MatchString(lines[0]) {
		t.Fatalf("node list:\n%s", out.String())
	}
	// The columns before the new ones keep their places (scripts and the
	// e2e tests split the lines into fields).
	for i, want := range [][]string{
		{"db-1", "prod", "100.64.0.2", "a=b,role=db", "2026-11-26T01:02:03Z", "ca", "spiffe://example.test/latch/node/db-1"},
		{"laptop", "dev", "100.64.0.3", "role=client", "2026-11-26T01:02:03Z", "spire", "spiffe://spire.test/dev/laptop"},
	} {
		if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("line %d: %q, want %q", i+1, got, want)
		}
	}
}
