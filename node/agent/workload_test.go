package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

func TestParseWorkload(t *testing.T) {
	tests := []struct {
		spec       string
		want       wire.WorkloadDecl
		wantCgroup string
		wantErr    string // substring; "" for success
	}{
		{spec: "name=api,namespace=prod,labels=app=api;tier=back,ports=8080/tcp;53/udp;http=80/tcp",
			want: wire.WorkloadDecl{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api", "tier": "back"},
				Ports: []inventory.Port{{Port: 8080, Protocol: inventory.TCP}, {Port: 53, Protocol: inventory.UDP}, {Name: "http", Port: 80, Protocol: inventory.TCP}}}},
		{spec: "name=db,namespace=data,cgroup=/sys/fs/cgroup/db.slice,ports=5432",
			want:       wire.WorkloadDecl{Name: "db", Namespace: "data", Ports: []inventory.Port{{Port: 5432, Protocol: inventory.TCP}}},
			wantCgroup: "/sys/fs/cgroup/db.slice"},
		{spec: " name=x , namespace=y ,", want: wire.WorkloadDecl{Name: "x", Namespace: "y"}},
		{spec: "name=api,namespace=prod,spiffe_id=spiffe://td/prod/api", want: wire.WorkloadDecl{Name: "api", Namespace: "prod", SpiffeID: "spiffe://td/prod/api"}},
		{spec: "namespace=prod", wantErr: "name is missing"},
		{spec: "name=api", wantErr: "namespace is missing"},
		{spec: "name=api,namespace=prod,colour=red", wantErr: `unknown field "colour"`},
		{spec: "name=api,namespace=prod,bogus", wantErr: `field "bogus" is not key=value`},
		{spec: "name=api,name=web,namespace=prod", wantErr: `field "name" given twice`},
		{spec: "name=api,namespace=prod,labels=app", wantErr: `labels: "app" is not key=value`},
		{spec: "name=api,namespace=prod,labels=a=1;a=2", wantErr: `labels: key "a" given twice`},
		{spec: "name=api,namespace=prod,ports=http/tcp", wantErr: `ports: "http": port must be a number`},
		{spec: "name=api,namespace=prod,ports=70000/tcp", wantErr: "port must be a number 1-65535"},
		{spec: "name=api,namespace=prod,ports=0/tcp", wantErr: "port must be a number 1-65535"},
		{spec: "name=api,namespace=prod,ports=80/icmp", wantErr: `ports: "icmp": protocol must be tcp, udp or sctp`},
		{spec: "name=api,namespace=prod,ports==80/tcp", wantErr: "empty port name"},
		{spec: "name=api,namespace=prod,cgroup=", wantErr: "cgroup is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, cg, err := ParseWorkload(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseWorkload = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decl (-want +got):\n%s", diff)
			}
			if cg != tt.wantCgroup {
				t.Errorf("cgroup %q, want %q", cg, tt.wantCgroup)
			}
		})
	}
}

func TestCheckWorkloads(t *testing.T) {
	ws := []wire.WorkloadDecl{{Name: "api", Namespace: "prod"}}
	ok := func(string) error { return nil }
	if err := checkWorkloads(ws, map[string]string{"prod/api": "/x"}, ok); err != nil {
		t.Errorf("valid: %v", err)
	}
	cases := map[string]struct {
		ws      []wire.WorkloadDecl
		cgroups map[string]string
		isCg    func(string) error
		want    string
	}{
		"twice":          {append(ws, ws[0]), nil, ok, "declared twice"},
		"no namespace":   {[]wire.WorkloadDecl{{Name: "x"}}, nil, ok, "namespace"},
		"bad port":       {[]wire.WorkloadDecl{{Name: "x", Namespace: "y", Ports: []inventory.Port{{Port: 80, Protocol: "ICMP"}}}}, nil, ok, "port 80/ICMP"},
		"undeclared":     {ws, map[string]string{"prod/web": "/x"}, ok, "not declared"},
		"not a cgroup":   {ws, map[string]string{"prod/api": t.TempDir()}, isCgroup2Dir, "cgroup v2"},
		"missing cgroup": {ws, map[string]string{"prod/api": "/sys/fs/cgroup/latch-no-such"}, isCgroup2Dir, "no such file"},
	}
	for name, c := range cases {
		if err := checkWorkloads(c.ws, c.cgroups, c.isCg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if err := isCgroup2Dir("/sys/fs/cgroup"); err != nil {
			t.Errorf("/sys/fs/cgroup: %v", err)
		}
		if err := isCgroup2Dir("/sys/fs/cgroup/cgroup.procs"); err == nil {
			t.Error("a cgroup file passed as a cgroup directory")
		}
	}
}

// TestAgentWorkloads checks that the assigned workload addresses are bound
// on the device, saved in workloads.json, shown in status, and bound again
// from the saved file by a restarted agent while the coordinator is down.
func TestAgentWorkloads(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Workloads = append(cfg.Workloads, wire.WorkloadDecl{Name: "db", Namespace: "data",
		Ports: []inventory.Port{{Name: "pg", Port: 5432, Protocol: inventory.TCP}}})
	a := startAgent(t, cfg)
	dev := a.device(t)
	want := []netip.Prefix{netip.MustParsePrefix("100.64.1.1/32"), netip.MustParsePrefix("100.64.1.2/32")}
	eventually(t, "workload addresses on the device", func() bool { return slices.Equal(dev.Addresses(), want) })
	fi, err := os.Stat(filepath.Join(dir, WorkloadsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("workloads.json: %v, want mode 0600", err)
	}
	var st Status
	eventually(t, "workloads in status", func() bool {
		st, err = QueryStatus(context.Background(), dir)
		return err == nil && len(st.Workloads) == 2
	})
	wantSt := []WorkloadStatus{
		{Name: "web", Namespace: "default", IP: "100.64.1.1", Labels: map[string]string{"app": "web"}},
		{Name: "db", Namespace: "data", IP: "100.64.1.2", Ports: []inventory.Port{{Name: "pg", Port: 5432, Protocol: inventory.TCP}}},
	}
	if diff := cmp.Diff(wantSt, st.Workloads); diff != "" {
		t.Errorf("status workloads (-want +got):\n%s", diff)
	}
	a.stop(t)

	// Restarted with the coordinator down and "web" no longer declared:
	// the saved address of "db" is bound at once, that of "web" is not.
	fc.down.Store(true)
	cfg.JoinToken = ""
	cfg.Workloads = cfg.Workloads[1:]
	b := startAgent(t, cfg)
	devB := b.device(t)
	eventually(t, "the saved workload address on the restarted device", func() bool {
		return slices.Equal(devB.Addresses(), want[1:])
	})
}
