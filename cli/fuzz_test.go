package cli

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchnet/latch/internal/strictyaml"
	"github.com/latchnet/latch/node/agent"
	"github.com/spf13/cobra"
)

// FuzzNodeConfigFile feeds arbitrary bytes as `latch node --config FILE`
// and turns them into the agent's configuration as the command does
// (applyFile, then config). It never panics; a file it accepts gives
// workloads with a name, a namespace and valid ports, endpoints from the
// file, and exactly the file's labels (no label smuggled in through a
// value).
// Seeds: testdata/fuzz/FuzzNodeConfigFile.
func FuzzNodeConfigFile(f *testing.F) {
	f.Add([]byte("coordinator: https://coord.example:7443\nlabels: {role: db}\nworkloads:\n- {name: pg, namespace: prod, ports: [{port: 5432}]}\n"))
	path := filepath.Join(f.TempDir(), "node.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fl := nodeFlags{configFile: path, coordinator: "https://coord.test:7443", iface: agent.DefaultIface, listenPort: agent.DefaultListenPort,
			enforce: agent.EnforceAuto, flowInterval: agent.DefaultFlowInterval}
		ws, err := fl.applyFile(&cobra.Command{})
		if err != nil {
			return
		}
		cfg, err := fl.config()
		if err != nil {
			return
		}
		var nf nodeFile
		if err := strictyaml.UnmarshalStrict(data, &nf); err != nil {
			t.Fatalf("applyFile accepted what the decoder refuses: %v", err)
		}
		if len(nf.Labels) > 0 && !maps.Equal(cfg.Labels, nf.Labels) {
			t.Fatalf("the file's labels %q became %q", nf.Labels, cfg.Labels)
		}
		if len(nf.Endpoints) > 0 && len(cfg.Endpoints) != len(nf.Endpoints) {
			t.Fatalf("endpoints %q became %v", nf.Endpoints, cfg.Endpoints)
		}
		for _, w := range ws {
			if w.Name == "" || w.Namespace == "" {
				t.Fatalf("accepted workload %+v without a name or namespace", w)
			}
			for _, p := range w.Ports {
				if p.Port == 0 || !p.Protocol.Valid() {
					t.Fatalf("accepted workload %+v with port %+v", w, p)
				}
			}
		}
	})
}
