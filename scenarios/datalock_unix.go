//go:build unix

package scenarios

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockDataDir takes an exclusive lock on dir for as long as the returned
// file stays open (the system lets it go when the process ends, however
// it ends): two sims on one data directory would write the same stores,
// and a start that finds a half-loaded store makes it anew.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the data directory %s is in use by another sim: stop that one first, or use another --data directory", dir)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f, nil
}

// staleAfter is how long a temporary data directory must have been left
// unchanged before it may be removed as stale: a sim that has just
// created its directory has not taken the lock yet.
const staleAfter = time.Minute

// removeStaleTempDirs removes the temporary data directories (sim-* in
// root) that sims which ended without closing have left behind: after a
// kill -9, a crash, an interrupted test. A directory is stale when it is
// this user's, holds a lock file that no process holds (a running sim
// holds its own; the system lets it go when the process ends), and has
// not changed for staleAfter. Directories without a lock file are never
// touched. It returns the directories removed, and what could not be done.
func removeStaleTempDirs(root string, now time.Time) (removed []string, err error) {
	dirs, err := filepath.Glob(filepath.Join(root, "sim-*"))
	if err != nil {
		return nil, fmt.Errorf("list temporary data directories: %w", err)
	}
	var errs []error
	for _, dir := range dirs {
		ok, err := removeIfStale(dir, now)
		if ok {
			removed = append(removed, dir)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

func removeIfStale(dir string, now time.Time) (bool, error) {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < staleAfter {
		return false, nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return false, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR, 0)
	if err != nil {
		return false, nil // no lock file (not a sim's, or an older sim's), or not ours
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false, nil // a running sim holds it
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("remove stale temporary data directory: %w", err)
	}
	return true, nil
}
