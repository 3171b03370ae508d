//go:build !unix

package scenarios

import (
	"os"
	"time"
)

// lockDataDir does not lock where the system has no flock: one sim per
// data directory is then the user's to keep.
func lockDataDir(string) (*os.File, error) { return nil, nil }

// removeStaleTempDirs removes nothing where the system has no flock: a
// directory's sim cannot be known to have ended.
func removeStaleTempDirs(string, time.Time) ([]string, error) { return nil, nil }
