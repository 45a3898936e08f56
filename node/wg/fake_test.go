package wg

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFake(t *testing.T) {
	f := NewFake("latch0", key(9), 51820)
	if f.Name() != "latch0" || f.PublicKey() != key(9) || f.ListenPort() != 51820 {
		t.Fatalf("identity: %q %v %d", f.Name(), f.PublicKey(), f.ListenPort())
	}
	one := []Peer{want(1, "198.18.0.2:51820", 0, "100.64.0.2/32")}
	if err := f.Apply(one); err != nil {
		t.Fatal(err)
	}
	one[0].AllowedIPs[0] = pfx("100.64.9.9/32")[0] // the fake must hold a copy
	st, err := f.Peers()
	if err != nil {
		t.Fatal(err)
	}
	wantSt := []PeerStatus{{PublicKey: key(1), Endpoint: "198.18.0.2:51820", AllowedIPs: pfx("100.64.0.2/32")}}
	if diff := cmp.Diff(wantSt, st, cmpPrefix); diff != "" {
		t.Errorf("Peers (-want +got):\n%s", diff)
	}

	boom := errors.New("boom")
	f.FailApply(boom)
	if err := f.Apply(nil); !errors.Is(err, boom) {
		t.Errorf("Apply with FailApply = %v, want boom", err)
	}
	if n := len(f.Current()); n != 1 {
		t.Errorf("failed Apply changed the peer set to %d peers", n)
	}
	f.FailApply(nil)
	if err := f.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Current()); n != 0 {
		t.Errorf("after Apply(nil): %d peers", n)
	}
	if n := len(f.Applied()); n != 3 { // before the invalid Apply below
		t.Errorf("Applied() has %d calls, want 3", n)
	}
	if err := f.Apply([]Peer{want(9, "", 0)}); !errors.Is(err, ErrInvalidPeer) {
		t.Errorf("Apply with the device's own key = %v, want ErrInvalidPeer", err)
	}
	if err := f.Close(); err != nil || !f.Closed() {
		t.Fatalf("Close: %v, Closed %v", err, f.Closed())
	}
	if err := f.Apply(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
}
