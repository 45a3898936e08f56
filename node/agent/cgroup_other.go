//go:build !linux

package agent

import "errors"

// isCgroup2Dir fails: cgroups exist only on Linux.
func isCgroup2Dir(string) error {
	return errors.New("workload cgroups are only supported on Linux")
}
