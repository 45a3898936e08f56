package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

const throughputPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: prod}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 5201}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client, namespace: prod}
spec:
  podSelector: {matchLabels: {app: client}}
  egress: [{to: [{podSelector: {matchLabels: {app: server}}}], ports: [{port: 5201}]}]
`

// BenchmarkThroughput measures iperf3 TCP throughput through one tunnel
// (two nodes, wireguard-go) with each enforcement mode, in one run:
//
//	go test -run '^$' -bench Throughput -benchtime 5x ./e2e/   # as root
//
// One cluster holds a client and a server node per mode (both ends run
// that mode). Each iteration is one round: a 5 s iperf3 run per mode, in
// turn, so that whatever else the machine does falls on every mode alike.
// The figures are the medians of the receiver's rate over the rounds, and
// each mode's difference from "off".
func BenchmarkThroughput(b *testing.B) {
	iperfRounds(b, throughputPairs(b))
}

// iperfRounds runs one iperf3 round per iteration, every mode's pair in
// turn, and reports each mode's median rate and its difference from
// "off".
func iperfRounds(b *testing.B, pairs map[string]pair) {
	rates := map[string][]float64{}
	for b.Loop() {
		for _, mode := range enforceModes {
			rates[mode] = append(rates[mode], pairs[mode].iperf(b))
		}
	}
	off := median(rates["off"])
	for _, mode := range enforceModes {
		m := median(rates[mode])
		b.ReportMetric(m, "Mbit/s-"+mode)
		if mode != "off" {
			b.ReportMetric(100*(m-off)/off, "%-"+mode)
		}
		b.Logf("enforce=%s: rounds %s Mbit/s, median %.0f", mode, fmtRates(rates[mode]), m)
	}
}

// BenchmarkEnforceCPU measures what enforcement costs the tunnel in CPU,
// which unlike throughput does not move with whatever else the machine
// runs: during one 5 s iperf3 run per mode, `perf record -a -g` samples
// every CPU, and the figure is the share of the samples of the tunnel's
// processes (latch nodes and iperf3) spent in the enforcer, callees
// included: the TCX and cgroup programs for ebpf, the Filter's decisions
// for userspace.
//
//	go test -run '^$' -bench EnforceCPU -benchtime 1x ./e2e/   # as root, needs perf
func BenchmarkEnforceCPU(b *testing.B) {
	if _, err := exec.LookPath("perf"); err != nil {
		b.Fatal("perf is needed: apt-get install linux-perf (make bench installs it)")
	}
	pairs := throughputPairs(b)
	enforcer := map[string]*regexp.Regexp{
		"ebpf":      regexp.MustCompile(`bpf_prog_[0-9a-f]+_latch_`),
		"userspace": regexp.MustCompile(`enforce/userspace\.\(\*Filter\)\.(decide|Apply|finish)$`),
	}
	for b.Loop() {
		for _, mode := range []string{"ebpf", "userspace"} {
			data := filepath.Join(b.TempDir(), "perf.data")
			perf := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-a", "-g", "-o", data, "--", "sleep", "5")
			if err := perf.Start(); err != nil {
				b.Fatal(err)
			}
			rate := pairs[mode].iperf(b)
			if err := perf.Wait(); err != nil {
				b.Fatalf("perf record: %v", err)
			}
			out, err := exec.Command("perf", "report", "-i", data, "--children", "--sort", "sym", "-g", "none", "-q",
				"--comm", "latch,iperf3", "--percentage", "relative").Output()
			if err != nil {
				b.Fatalf("perf report: %v", err)
			}
			share := 0.0
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) < 4 || !enforcer[mode].MatchString(f[len(f)-1]) {
					continue
				}
				v, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
				if err != nil {
					b.Fatalf("perf report line %q: %v", line, err)
				}
				share += v
			}
			b.ReportMetric(share, "%cpu-"+mode)
			b.Logf("enforce=%s: %.0f Mbit/s, enforcer %.2f%% of the tunnel's CPU samples", mode, rate, share)
		}
	}
}

// enforceModes are the agent's --enforce modes, "off" first.
var enforceModes = []string{"off", "ebpf", "userspace"}

// pair is a client node and its server's address, both ends in one mode.
type pair struct {
	client *node
	server netip.Addr
}

// throughputPairs starts one cluster with a client and an iperf3 server
// node per enforcement mode, and waits until every client connects.
func throughputPairs(b *testing.B) map[string]pair {
	c := newCluster(b)
	pairs := map[string]pair{}
	for _, mode := range enforceModes {
		server := c.AddNodeWith("server-"+mode, c.joinToken("prod", "app=server"), "app=server", "--enforce", mode)
		client := c.AddNodeWith("client-"+mode, c.joinToken("prod", "app=client"), "app=client", "--enforce", mode)
		pairs[mode] = pair{client, c.overlayIP(server)}
		server.host.Start(b, nil, "iperf3", "-s", "-B", pairs[mode].server.String(), "-p", "5201")
	}
	if _, err := c.applyPolicy(throughputPolicy); err != nil {
		b.Fatal(err)
	}
	for _, mode := range enforceModes {
		p := pairs[mode]
		netlab.Eventually(b, 20*time.Second, func() error {
			return p.client.host.DialTCP(netip.AddrPortFrom(p.server, 5201), 2*time.Second)
		})
	}
	return pairs
}

// iperf runs iperf3 for 5 s from the client to the server and returns the
// receiver's rate in Mbit/s.
func (p pair) iperf(b *testing.B) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := p.client.host.Run(ctx, "iperf3", "-c", p.server.String(), "-p", "5201", "-t", "5", "-J")
	if err != nil {
		b.Fatalf("iperf3 from %s: %v\n%s", p.client.name, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		b.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}
