package ebpf

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/view"
)

func TestResolveCgroups(t *testing.T) {
	addrs := map[string]view.Addr{
		"prod/api": view.MustAddr("100.64.0.10"),
		"prod/web": view.MustAddr("100.64.0.11"),
	}
	ids := map[string]uint64{
		"/sys/fs/cgroup/api.service":   101,
		"/sys/fs/cgroup/web.service":   102,
		"/sys/fs/cgroup/api-link":      101, // the same cgroup under another name
		"/sys/fs/cgroup/unified/other": 103,
	}
	cgroupID := func(p string) (uint64, error) {
		if id, ok := ids[p]; ok {
			return id, nil
		}
		return 0, errors.New("no such file or directory")
	}
	tests := []struct {
		name    string
		in      map[string]string
		want    map[uint64]view.Addr
		wantErr string
		is      error
	}{
		{name: "nil", in: nil, want: map[uint64]view.Addr{}},
		{
			name: "two workloads",
			in:   map[string]string{"/sys/fs/cgroup/api.service": "prod/api", "/sys/fs/cgroup/web.service": "prod/web"},
			want: map[uint64]view.Addr{101: addrs["prod/api"], 102: addrs["prod/web"]},
		},
		{
			name: "two cgroups of one workload",
			in:   map[string]string{"/sys/fs/cgroup/api.service": "prod/api", "/sys/fs/cgroup/unified/other": "prod/api"},
			want: map[uint64]view.Addr{101: addrs["prod/api"], 103: addrs["prod/api"]},
		},
		{
			name: "same cgroup twice, same workload",
			in:   map[string]string{"/sys/fs/cgroup/api.service": "prod/api", "/sys/fs/cgroup/api-link": "prod/api"},
			want: map[uint64]view.Addr{101: addrs["prod/api"]},
		},
		{name: "empty path", in: map[string]string{"": "prod/api"}, wantErr: "empty path"},
		{name: "relative path", in: map[string]string{"api.service": "prod/api"}, wantErr: "not an absolute path"},
		{name: "workload without namespace", in: map[string]string{"/sys/fs/cgroup/api.service": "api"}, wantErr: `"namespace/name"`},
		{name: "empty workload", in: map[string]string{"/sys/fs/cgroup/api.service": ""}, wantErr: `"namespace/name"`},
		{name: "too many slashes", in: map[string]string{"/sys/fs/cgroup/api.service": "prod/api/x"}, wantErr: `"namespace/name"`},
		{name: "unknown workload", in: map[string]string{"/sys/fs/cgroup/api.service": "prod/db"}, is: ErrUnknownWorkload},
		{name: "missing cgroup", in: map[string]string{"/sys/fs/cgroup/nope": "prod/api"}, wantErr: "no such file"},
		{
			name:    "same cgroup, two workloads",
			in:      map[string]string{"/sys/fs/cgroup/api.service": "prod/api", "/sys/fs/cgroup/api-link": "prod/web"},
			wantErr: "are the same cgroup",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveCgroups(tt.in, addrs, cgroupID)
			switch {
			case tt.is != nil:
				if !errors.Is(err, tt.is) {
					t.Fatalf("error %v, want %v", err, tt.is)
				}
				return
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resolveCgroups (-want +got):\n%s", diff)
			}
		})
	}
}
