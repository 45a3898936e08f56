package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNodeConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "node.yaml")
	os.WriteFile(file, []byte(`coordinator: https://coord.example:7443
name: web1
labels: {app: web}
listenPort: 51999
enforce: userspace
flowInterval: 2s
metricsListen: 127.0.0.1:9999
advertiseRoutes: [198.19.1.0/24, "198.19.2.0/24:snat"]
workloads:
  - name: api
    namespace: prod
    labels: {app: api}
    ports: [{name: http, port: 8080, protocol: tcp}, {port: 53, protocol: UDP}]
`), 0o644)
	cmd := newNodeCmd()
	if err := cmd.ParseFlags([]string{"--config", file, "--name", "override", "--state-dir", dir}); err != nil {
		t.Fatal(err)
	}
	var f nodeFlags
	// Reach the flags the command parsed into.
	f.configFile = file
	f.name, _ = cmd.Flags().GetString("name")
	f.stateDir = dir
	f.listenPort, _ = cmd.Flags().GetInt("listen-port")
	f.enforce, _ = cmd.Flags().GetString("enforce")
	ws, err := f.applyFile(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if f.name != "override" {
		t.Errorf("a flag given on the command line must win: name %q", f.name)
	}
	if f.coordinator != "https://coord.example:7443" || f.listenPort != 51999 || f.enforce != "userspace" || f.fileLabels["app"] != "web" || len(f.fileLabels) != 1 {
		t.Errorf("file values not applied: %+v", f)
	}
	if f.flowInterval != 2*time.Second || f.metricsListen != "127.0.0.1:9999" {
		t.Errorf("flowInterval/metricsListen not applied: %v %q", f.flowInterval, f.metricsListen)
	}
	if rs, err := f.advertisedRoutes(); err != nil || len(rs) != 2 || rs[0].Prefix != "198.19.1.0/24" || rs[0].SNAT || !rs[1].SNAT {
		t.Errorf("advertiseRoutes: %+v %v", rs, err)
	}
	if len(ws) != 1 || ws[0].Ports[0].Protocol != "TCP" || ws[0].Ports[1].Protocol != "UDP" {
		t.Errorf("workloads: %+v", ws)
	}

	bad := filepath.Join(dir, "bad.yaml")
	for doc, want := range map[string]string{
		"workloads: [{name: a}]\n":                                   "name and namespace are required",
		"workloads: [{name: a, namespace: p, ports: [{port: 0}]}]\n": "ports[0]",
		"nmae: x\n":                              "nmae",
		"flowInterval: 5s5\n":                    "want a duration",
		"advertiseRoutes: [198.19.1.0/24:nat]\n": "advertiseRoutes[0]: invalid route",
		"workloads: [{name: a, namespace: p, ports: [{port: 1, protocol: icmp}]}]\n": "protocol TCP, UDP or SCTP",
	} {
		os.WriteFile(bad, []byte(doc), 0o644)
		g := nodeFlags{configFile: bad}
		if _, err := g.applyFile(newNodeCmd()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", doc, err, want)
		}
	}
}
