package cli

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
)

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"web":                         "web",
		"shop/web (n1 100.64.0.10) ·": "shop/web (n1 100.64.0.10) ·",
		"a\x1b[31mred\x1b[0m":         `a\x1b[31mred\x1b[0m`,
		"title\x1b]0;owned\a":         `title\x1b]0;owned\x07`,
		"tab\there\nnewline\r":        `tab\x09here\x0anewline\x0d`,
		"csi\u009b2J del\x7f":         `csi\u009b2J del\x7f`,
		"bidi\u202egnp.exe":           `bidi\u202egnp.exe`,
		"zero\u200bwidth":             `zero\u200bwidth`,
		"bad\xffutf8":                 `bad\xffutf8`,
		"tag\U000E0041":               `tag\U000e0041`,
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTablesEscapeNodeData: a label value and a flow reason carrying an
// ESC sequence (as a hostile node or user could send) reach the terminal
// escaped, in `latch admin node list` and `latch flows`.
func TestTablesEscapeNodeData(t *testing.T) {
	const evil = "x\x1b]0;owned\a\x1b[2J"
	var out bytes.Buffer
	if err := writeNodeList(&out, []adminapi.Node{{Name: "n1", Namespace: "prod", IP: netip.MustParseAddr("100.64.0.2"),
		Labels: map[string]string{"role": evil}, LastSeen: time.Now(), Identity: adminapi.IdentityCA}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\a") || !strings.Contains(out.String(), `role=x\x1b]0;owned\x07\x1b[2J`) {
		t.Errorf("node list:\n%q", out.String())
	}
	f := adminapi.Flow{Time: time.Now(), Reporter: "n1", Direction: "ingress", Protocol: "TCP", Port: 22, Verdict: "denied", Reason: evil,
		Src: adminapi.FlowEnd{IP: netip.MustParseAddr("198.19.0.7")},
		Dst: adminapi.FlowEnd{Namespace: "prod", Workload: "w\x1b[1m", Node: "n1", IP: netip.MustParseAddr("100.64.0.3")}}
	out.Reset()
	if err := printFlow(&out, &f, false); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\a") || !strings.Contains(out.String(), `(x\x1b]0;owned\x07\x1b[2J)`) || !strings.Contains(out.String(), `prod/w\x1b[1m`) {
		t.Errorf("flow line: %q", out.String())
	}
}

// TestErrorsAreEscaped: an error quoting outside text reaches stderr
// escaped, its lines kept.
func TestErrorsAreEscaped(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"policy", "validate", "-f", t.TempDir() + "/x\x1b[2J.yaml"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(errb.String(), "\x1b") || !strings.Contains(errb.String(), `x\x1b[2J.yaml`) || !strings.HasSuffix(errb.String(), "\n") {
		t.Errorf("stderr %q", errb.String())
	}
}
