package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// routeStatus reads the routes of n's `latch status --json`.
func (c *cluster) routeStatus(n *node) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Command(ctx, c.bin, "status", "--state-dir", n.state, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("latch status on %s: %v", n.name, err)
	}
	var st struct {
		Routes []struct{ Prefix, Status string } `json:"routes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, r := range st.Routes {
		m[r.Prefix] = r.Status
	}
	return m, nil
}

// TestAdvertisedRoutes: a real node started with --advertise-routes shows
// in `latch admin route list`; an approval survives the node's restart,
// which the node then shows in `latch status`; a route that is not a
// network address stops the node at startup with a clear message.
// (Carrying traffic through the gateway is a later slice.)
func TestAdvertisedRoutes(t *testing.T) {
	c := newCluster(t)
	gw := c.AddNodeWith("gw", c.joinToken("prod", "role=gw"), "role=gw", "--advertise-routes", "198.19.1.0/24,198.19.2.0/24:snat")
	out := c.mustAdmin("admin", "route", "list")
	for _, want := range []string{`(?m)^gw\s+198\.19\.1\.0/24\s+no\s+advertised\s`, `(?m)^gw\s+198\.19\.2\.0/24\s+yes\s+advertised\s`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("latch admin route list: no line %s in\n%s", want, out)
		}
	}
	c.mustAdmin("admin", "route", "approve", "gw", "198.19.1.0/24")

	gw.proc.Kill(15)
	gw.proc.Wait(10 * time.Second)
	c.restart(gw)
	netlab.Eventually(t, 20*time.Second, func() error {
		rs, err := c.routeStatus(gw)
		if err != nil {
			return err
		}
		if rs["198.19.1.0/24"] != "approved" || rs["198.19.2.0/24"] != "advertised" {
			return fmt.Errorf("routes in the gateway's status: %v", rs)
		}
		return nil
	})
	if out := c.mustAdmin("admin", "route", "list"); !regexp.MustCompile(`(?m)^gw\s+198\.19\.1\.0/24\s+no\s+approved\s.*admin$`).MatchString(out) {
		t.Errorf("after the restart the approval stands:\n%s", out)
	}

	// Bad routes: refused with a message naming the problem, by the node
	// before it starts or by the coordinator when the node registers;
	// nothing of the refused node is kept.
	before := c.mustAdmin("admin", "route", "list")
	h := c.lab.Host("badgw")
	for i, tc := range []struct{ route, want string }{
		{"198.19.1.5/24", "198.19.1.5/24 is not a network address: did you mean 198.19.1.0/24?"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"100.64.1.0/24", "100.64.1.0/24 overlaps the overlay"},
		{"198.19.1.0/25", "route 198.19.1.0/25 overlaps 198.19.1.0/24, which node gw advertises"},
		{"198.19.9.0/24,198.19.9.128/25", "198.19.9.128/25 overlaps 198.19.9.0/24, also advertised"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		name := fmt.Sprintf("badgw%d", i)
		bad, err := h.Command(ctx, c.bin, "node", "--coordinator", c.url, "--join-token", c.joinToken("prod", ""), "--state-dir", t.TempDir(),
			"--iface", fmt.Sprintf("ltb%d%s", i, c.lab.Suffix()), "--name", name, "--advertise-routes", tc.route).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(bad), tc.want) {
			t.Errorf("a node advertising %s: %v, want an error saying %q:\n%s", tc.route, err, tc.want, bad)
		}
		if after := c.mustAdmin("admin", "route", "list"); after != before {
			t.Errorf("after a node advertising %s was refused, the routes changed:\n%s\nwas\n%s", tc.route, after, before)
		}
		if nodes := c.mustAdmin("admin", "node", "list"); strings.Contains(nodes, name) {
			t.Errorf("the refused node %s is listed:\n%s", name, nodes)
		}
	}
}
