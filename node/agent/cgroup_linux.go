//go:build linux

package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// isCgroup2Dir reports, as an error, whether path is not a directory on a
// cgroup v2 file system.
func isCgroup2Dir(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("%w: give an existing cgroup v2 directory, e.g. /sys/fs/cgroup/system.slice/NAME.service", err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("not on a cgroup v2 file system (is it a cgroup v1 hierarchy, or not under /sys/fs/cgroup?)")
	}
	var s unix.Stat_t
	if err := unix.Stat(path, &s); err != nil {
		return err
	}
	if s.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("not a directory: give the cgroup's directory, not one of its files")
	}
	return nil
}
