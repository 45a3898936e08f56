package coordinator

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// prepareDataDir makes the coordinator's data directory (CA key, admin
// token, first admin password, database) private: it creates it 0700,
// tightens an existing one to 0700 with a warning, and refuses one owned
// by a user other than uid (the effective uid of this process), whose
// owner could read or replace the CA key.
func prepareDataDir(dir string, uid int, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory: give --data-dir a directory", dir)
	}
	if owner, ok := fileOwner(fi); ok && owner != uid {
		return fmt.Errorf("data dir %s is owned by uid %d, not by the user running the coordinator (uid %d): run the coordinator as its owner, or chown the directory", dir, owner, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data dir %s: making it private (0700): %w", dir, err)
		}
		log.Warn("the data dir was open to other users: made it 0700; check that nobody copied the CA key or the admin token from it",
			"data_dir", dir, "was", fmt.Sprintf("%04o", perm))
	}
	return nil
}
