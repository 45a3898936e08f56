//go:build !linux

package api

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist:
// keepalive probes alone detect a dead peer there.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
