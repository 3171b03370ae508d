//go:build !unix

package scenarios

import "os"

// lockDataDir does not lock where the system has no flock: one sim per
// data directory is then the user's to keep.
func lockDataDir(string) (*os.File, error) { return nil, nil }
