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

// staleAfter is how long a temporary data directory's list of files must
// have been left unchanged (its modification time) before it may be
// removed as stale: a sim that has just created its directory has not
// taken the lock yet.
const staleAfter = time.Minute

// removeStaleTempDirs removes the temporary data directories (sim-NNN in
// root, as os.MkdirTemp names them) that sims which ended without closing
// have left behind: after a kill -9, a crash, an interrupted test. A
// directory is stale when it is this user's, is marked temporary (a
// --data directory never is), holds a lock file that no process holds (a
// running sim holds its own; the system lets it go when the process ends,
// on a local file system), and no file has been added to it or removed
// from it for staleAfter.
// It returns the directories removed, and what could not be done.
func removeStaleTempDirs(root string, now time.Time) (removed []string, err error) {
	dirs, err := filepath.Glob(filepath.Join(root, tempDirPrefix+"*"))
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
	if !isTempDirName(filepath.Base(dir)) {
		return false, nil
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < staleAfter {
		return false, nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return false, nil
	}
	// Checked before locking too, so that a --data directory is never
	// locked here even for a moment (its sim, starting, would find it in
	// use); the check that counts is the one under the lock, below.
	if !markedTemporary(dir) {
		return false, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, nil // no lock file, or not ours
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false, nil // a running sim holds it
	}
	// Under the lock, so that a sim that has just taken this directory
	// as its --data (which unmarks it) is not raced.
	if !markedTemporary(dir) {
		return false, nil
	}
	// Moved aside first, still under the lock: a sim that starts on this
	// path as --data meanwhile makes a new directory rather than having
	// its files removed.
	gone := dir + ".stale"
	if err := os.Rename(dir, gone); err != nil {
		return false, fmt.Errorf("remove stale temporary data directory: %w", err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return true, fmt.Errorf("remove stale temporary data directory: %w", err)
	}
	return true, nil
}

// markedTemporary tells whether dir holds the mark of a temporary data
// directory (a regular file).
func markedTemporary(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, tempMark))
	return err == nil && fi.Mode().IsRegular()
}
