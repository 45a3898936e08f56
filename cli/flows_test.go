package cli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
)

func TestFormatFlow(t *testing.T) {
	f := adminapi.Flow{ID: 7, Reporter: "n1", Direction: "egress", Time: time.Date(2026, 5, 4, 3, 2, 1, 0, time.Local), Protocol: "TCP", Port: 8080,
		Src:     adminapi.FlowEnd{Namespace: "shop", Workload: "web", Node: "n1", IP: netip.MustParseAddr("100.64.0.10")},
		Dst:     adminapi.FlowEnd{IP: netip.MustParseAddr("198.19.0.7")},
		Verdict: "would-deny", Reason: "policy", Packets: 3, Bytes: 180}
	got := formatFlow(&f)
	want := "May  4 03:02:01.000  shop/web (n1 100.64.0.10) -> 198.19.0.7 (outside the overlay's workloads):8080/TCP  WOULD-DENY (policy)  3 pkts 180 B  by n1/egress"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	var b bytes.Buffer
	if err := printFlow(&b, &f, true); err != nil {
		t.Fatal(err)
	}
	var back adminapi.Flow
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.ID != 7 || back.Src.Workload != "web" || !strings.HasSuffix(b.String(), "}\n") {
		t.Fatalf("JSON line %q: %v", b.String(), err)
	}
}

func TestFlowsFlagErrors(t *testing.T) {
	for args, want := range map[string]string{
		"flows --verdict maybe":         "--verdict \"maybe\": want allowed, denied or would-deny",
		"policy suggest":                "--namespace is required",
		"policy suggest -n x --since 0": "want a positive duration",
	} {
		var out, errb bytes.Buffer
		root := newRoot(&out, &errb)
		root.SetArgs(strings.Fields(args))
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("latch %s: %v, want %q", args, err, want)
		}
	}
}

func TestCoordinatorRetentionFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for args, want := range map[string]string{
		"coordinator --audit-retention 30m": "--audit-retention 30m0s: must be at least 1h",
		"coordinator --audit-max-rows 5":    "--audit-max-rows 5: must be 0 (no bound) or at least 10",
		"coordinator --audit-max-rows -1":   "--audit-max-rows -1: must be 0 (no bound) or at least 10",
	} {
		var out, errb bytes.Buffer
		root := newRoot(&out, &errb)
		root.SetArgs(append(strings.Fields(args), "--data-dir", dir, "--listen", "127.0.0.1:0"))
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("latch %s: %v, want %q", args, err, want)
		}
	}
}
