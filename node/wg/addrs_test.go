package wg

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanAddrs(t *testing.T) {
	p := netip.MustParsePrefix
	primary := p("100.64.0.2/32")
	ll := p("fe80::1/64")
	tests := []struct {
		name             string
		current          []netip.Prefix
		extra            []netip.Prefix
		wantAdd, wantDel []netip.Prefix
	}{
		{"nothing to do", []netip.Prefix{primary, ll}, nil, nil, nil},
		{"add extra", []netip.Prefix{primary}, []netip.Prefix{p("100.64.0.9/32"), p("100.64.0.3/32")},
			[]netip.Prefix{p("100.64.0.3/32"), p("100.64.0.9/32")}, nil},
		{"primary missing", nil, nil, []netip.Prefix{primary}, nil},
		{"remove stale, keep link-local", []netip.Prefix{primary, ll, p("100.64.0.7/32"), p("100.64.0.3/32")}, []netip.Prefix{p("100.64.0.3/32")},
			nil, []netip.Prefix{p("100.64.0.7/32")}},
		{"duplicates", []netip.Prefix{primary}, []netip.Prefix{p("100.64.0.3/32"), p("100.64.0.3/32"), primary},
			[]netip.Prefix{p("100.64.0.3/32")}, nil},
		{"replace all", []netip.Prefix{primary, p("100.64.0.4/32")}, []netip.Prefix{p("100.64.0.5/32")},
			[]netip.Prefix{p("100.64.0.5/32")}, []netip.Prefix{p("100.64.0.4/32")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, del := PlanAddrs(tt.current, primary, tt.extra)
			if diff := cmp.Diff(tt.wantAdd, add, cmpPrefix); diff != "" {
				t.Errorf("add (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDel, del, cmpPrefix); diff != "" {
				t.Errorf("del (-want +got):\n%s", diff)
			}
			// Applying the plan reaches a fixed point.
			next := map[netip.Prefix]bool{}
			for _, c := range tt.current {
				next[c] = true
			}
			for _, a := range add {
				next[a] = true
			}
			for _, d := range del {
				delete(next, d)
			}
			var after []netip.Prefix
			for q := range next {
				after = append(after, q)
			}
			if add, del := PlanAddrs(after, primary, tt.extra); len(add)+len(del) != 0 {
				t.Errorf("second plan not empty: add %v del %v", add, del)
			}
		})
	}
}

func TestFakeSetAddresses(t *testing.T) {
	p := netip.MustParsePrefix
	f := NewFake("latch0", key(9), 51820)
	if err := f.SetAddresses([]netip.Prefix{p("100.64.0.9/32"), p("100.64.0.3/32"), p("100.64.0.9/32")}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Prefix{p("100.64.0.3/32"), p("100.64.0.9/32")}, f.Addresses(), cmpPrefix); diff != "" {
		t.Errorf("Addresses (-want +got):\n%s", diff)
	}
	if err := f.SetAddresses([]netip.Prefix{p("100.64.0.0/24")}); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("SetAddresses with a /24 = %v, want ErrInvalidAddress", err)
	}
	if err := f.SetAddresses([]netip.Prefix{{}}); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("SetAddresses with an invalid prefix = %v, want ErrInvalidAddress", err)
	}
	boom := errors.New("boom")
	f.FailSetAddresses(boom)
	if err := f.SetAddresses(nil); !errors.Is(err, boom) {
		t.Errorf("SetAddresses with FailSetAddresses = %v, want boom", err)
	}
	f.FailSetAddresses(nil)
	if n := len(f.Addresses()); n != 2 {
		t.Errorf("a failed SetAddresses changed the addresses to %d", n)
	}
	if err := f.SetAddresses(nil); err != nil || len(f.Addresses()) != 0 {
		t.Errorf("SetAddresses(nil) = %v, addresses %v", err, f.Addresses())
	}
	f.Close()
	if err := f.SetAddresses(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SetAddresses after Close = %v, want ErrClosed", err)
	}
}
