//go:build unix

package agent

import "syscall"

// errConnRefused is what dialing a socket nobody listens on fails with.
var errConnRefused error = syscall.ECONNREFUSED
