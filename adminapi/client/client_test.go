package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/latchnet/latch/adminapi"
)

// A follow stream whose credential the coordinator no longer accepts ends
// with a line saying why; the client reports it instead of a bare "ended".
func TestFollowReportsTheCoordinatorsReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/admin/flows" || r.URL.Query().Get("follow") != "true" || r.Header.Get("Authorization") != "Bearer t" {
			t.Errorf("request %s %v", r.URL, r.Header)
		}
		w.Write([]byte(`{"id":1,"verdict":"allowed"}` + "\n" + `{"error":"unknown, revoked or expired API token","code":"unauthorized"}` + "\n"))
	}))
	defer srv.Close()
	c := New(srv.URL, "t", srv.Client())
	var flows int
	err := c.FollowFlows(context.Background(), FlowQuery{}, func(adminapi.Flow) error { flows++; return nil })
	if flows != 1 || err == nil || !strings.Contains(err.Error(), "revoked or expired API token") || !IsCode(err, "unauthorized") {
		t.Fatalf("follow: %d flows, %v", flows, err)
	}
}

// An answer that is not a success is an *Error with the API's code and
// message; one without an API error body says the HTTP status.
func TestErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/admin/nodes/x" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"node \"x\": not found","code":"not_found"}`))
			return
		}
		http.Error(w, "teapot", http.StatusTeapot)
	}))
	defer srv.Close()
	c := New(srv.URL+"/", "t", srv.Client())
	_, err := c.Node(context.Background(), "x")
	if !IsCode(err, "not_found") || err.Error() != `node "x": not found` {
		t.Fatalf("not found: %#v", err)
	}
	if _, err = c.Nodes(context.Background()); !strings.Contains(err.Error(), "418") || !IsCode(err, "") {
		t.Fatalf("teapot: %v", err)
	}
}
