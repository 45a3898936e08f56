package enforce

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/view"
)

func TestStatsAdd(t *testing.T) {
	var st Stats
	st.Add("policy", Dropped, 3)
	st.Add("tracked", Allowed, 5)
	st.Add("monitor", WouldDeny, 2)
	st.Add("policy", Dropped, 1)
	st.Add("fragment", Dropped, 0) // zero: left out
	if want := map[string]uint64{"policy": 4, "tracked": 5, "monitor": 2}; !cmp.Equal(st.Packets, want) {
		t.Errorf("packets %v, want %v", st.Packets, want)
	}
	if st.Passed != 7 || st.Dropped != 4 {
		t.Errorf("passed %d, dropped %d; want 7, 4", st.Passed, st.Dropped)
	}
	for reason, want := range map[string]Verdict{"policy": Dropped, "tracked": Allowed, "monitor": Allowed} {
		if got := st.Verdict(reason); got != want {
			t.Errorf("Verdict(%s) = %s, want %s", reason, got, want)
		}
	}
}

// TestStatsJSON: the JSON form (the agent's status) has the keys it had
// before the enforcers shared it, and leaves out counters an enforcer
// does not keep.
func TestStatsJSON(t *testing.T) {
	st := Stats{ViewVersion: 3, FlowCapacity: 64, FlowsCreated: 9, Flows: new(2), FlowsEvicted: new(uint64(1))}
	st.Add("new-flow", Allowed, 2)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"viewVersion":3,"packets":{"new-flow":2},"passed":2,"dropped":0,"eventsLost":0,"flowCapacity":64,"flowsCreated":9,"flows":2,"flowsEvicted":1}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
}

func TestFake(t *testing.T) {
	f := NewFake()
	if err := f.Apply(&view.View{Version: 1}); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("does not fit")
	f.FailApply(refused)
	if err := f.Apply(&view.View{Version: 2}); !errors.Is(err, refused) {
		t.Fatalf("Apply while failing: %v", err)
	}
	var st Stats
	st.Add("policy", Dropped, 1)
	f.SetStats(st, nil)
	for range cap(f.events) + 1 {
		f.Send(Event{Reason: "policy"})
	}
	got, err := f.Stats()
	if err != nil || got.ViewVersion != 1 || got.EventsLost != 1 || got.Verdict("policy") != Dropped || f.Attempts() != 2 || len(f.Applied()) != 1 {
		t.Errorf("stats %+v, %v; attempts %d, applied %d: want view 1 in force, 1 event lost", got, err, f.Attempts(), len(f.Applied()))
	}
	if ev := <-f.Events(); ev.Reason != "policy" {
		t.Errorf("event %+v", ev)
	}
	f.Close()
	for range f.Events() { // drains, then ends: Close closed it
	}
	if !f.Closed() {
		t.Error("Closed after Close")
	}
}
