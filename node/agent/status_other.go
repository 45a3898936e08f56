//go:build !unix

package agent

import "errors"

// errConnRefused never matches where unix sockets refuse differently.
var errConnRefused = errors.New("connection refused")
