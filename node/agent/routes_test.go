package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/wire"
)

// TestAgentAdvertisesRoutes: the agent sends its advertised routes in its
// registration, and its status shows each with the status the coordinator
// answered.
func TestAgentAdvertisesRoutes(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Routes = []wire.Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}}
	startAgent(t, cfg)
	fc.nextStream(t)
	if diff := cmp.Diff(cfg.Routes, fc.lastRegister().Routes); diff != "" {
		t.Errorf("registered routes (-want +got):\n%s", diff)
	}
	want := []RouteStatus{{Prefix: "198.19.1.0/24", Status: wire.RouteApproved}, {Prefix: "198.19.2.0/24", SNAT: true, Status: wire.RouteAdvertised}}
	var st Status
	eventually(t, "routes in the status", func() bool {
		var err error
		st, err = QueryStatus(context.Background(), dir)
		return err == nil && cmp.Equal(want, st.Routes)
	})
}
