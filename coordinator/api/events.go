package api

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// eventKeepalive is how often the event stream sends a comment so that
// proxies and the browser keep the connection.
const eventKeepalive = 15 * time.Second

// events streams state events as server-sent events: "change" with an
// adminapi.Event as data, and "resync" when events were lost. At least
// once per keepalive interval (Config.Keepalive) it authenticates the
// request again; when its credential no longer holds (user deleted,
// session ended, API token revoked or expired) it sends "end" with an
// adminapi.Error as data and ends.
func (s *Server) events(c echo.Context) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, ": latch events\n\n"); err != nil {
		return nil
	}
	w.Flush()
	watcher, stop := s.cfg.State.Watch()
	defer stop()
	tick := time.NewTicker(eventKeepalive)
	defer tick.Stop()
	recheck := time.NewTicker(s.cfg.Keepalive)
	defer recheck.Stop()
	ctx := c.Request().Context()
	for {
		var msg string
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			msg = ": keepalive\n\n"
		case <-recheck.C:
			err := s.adminStillAuthorized(c)
			if err == nil {
				continue
			}
			data, _ := jsonString(classify(err).body())
			_, _ = io.WriteString(w, "event: end\ndata: "+data+"\n\n")
			w.Flush()
			return nil
		case ev := <-watcher.C:
			if watcher.Lost() {
				msg = "event: resync\ndata: {}\n\n"
			}
			data, err := jsonString(toEvent(ev))
			if err != nil {
				return err
			}
			msg += "event: change\ndata: " + data + "\n\n"
		}
		if _, err := io.WriteString(w, msg); err != nil {
			return nil
		}
		w.Flush()
	}
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
