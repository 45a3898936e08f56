// Package atomicfile writes files so that a reader or a crash never sees a
// half-written one: data goes to a temporary file in the same directory
// with exactly the requested mode (no umask), is synced, and then takes the
// final name. Used for keys, certificates and state by the coordinator's CA
// and the node agent. Anything may import it.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// Create writes data to path and fails if path already exists (a link,
// unlike a rename, never replaces a file another process made).
func Create(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Link)
}

func write(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		f.Close()
		os.Remove(tmp) // after a rename it is gone already; after a link it is a second name
		if err != nil {
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	// CreateTemp makes the file 0600, so it is never readable by others
	// before the mode is set.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return place(tmp, path)
}
