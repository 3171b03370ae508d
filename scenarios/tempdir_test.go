package scenarios

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestKilledServeTempDirIsRemovedLater: `sim serve` without --data keeps
// its stores in a temporary directory. Killed with SIGKILL it cannot
// remove it; the next sim to start does, once the directory has been
// left alone for a minute, and never a directory whose sim still runs,
// one without a lock file, a --data directory, or another user's.
func TestKilledServeTempDirIsRemovedLater(t *testing.T) {
	bin := buildSimToKill(t)
	root := t.TempDir()
	t.Setenv("TMPDIR", root)
	ctx := t.Context()
	old := time.Now().Add(-2 * staleAfter)
	age := func(dir string) {
		t.Helper()
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}
	simDirs := func() []string {
		t.Helper()
		dirs, err := filepath.Glob(filepath.Join(root, "sim-*"))
		if err != nil {
			t.Fatal(err)
		}
		return dirs
	}
	startAndClose := func() (own string) {
		t.Helper()
		before := simDirs()
		r, err := Start(ctx, DefaultWorld(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.tmpDir == "" || slices.Contains(before, r.tmpDir) {
			t.Fatalf("world's temporary directory %q, want a new one in %s", r.tmpDir, root)
		}
		if err := r.Close(ctx); err != nil {
			t.Fatal(err)
		}
		return r.tmpDir
	}

	// Directories that are not stale, however old: one without a lock
	// file; one not named as os.MkdirTemp names them, though marked; one a
	// sim took as its --data (it was marked temporary before: a sim that
	// takes a directory as --data unmarks it).
	mkdir := func(name string, files ...string) string {
		t.Helper()
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		age(dir)
		return dir
	}
	noLock := mkdir("sim-1", tempMark)
	badName := mkdir("sim-data", ".lock", tempMark)
	wasData := mkdir("sim-2", ".lock", tempMark)
	r, err := Start(ctx, DefaultWorld(), Options{DataDir: wasData})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if markedTemporary(wasData) {
		t.Fatal("a directory taken as --data is still marked temporary")
	}
	age(wasData)

	// Only root can give a directory away, to see it kept.
	var others []string
	if os.Getuid() == 0 {
		other := mkdir("sim-3", ".lock", tempMark)
		for _, p := range []string{filepath.Join(other, ".lock"), filepath.Join(other, tempMark), other} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
		age(other)
		others = append(others, other)
	}
	kept := append([]string{noLock, wasData, badName}, others...)
	slices.Sort(kept)

	srv, _ := startServe(t, bin, "")
	var served string
	for _, d := range simDirs() {
		if !slices.Contains(kept, d) {
			served = d
		}
	}
	if served == "" {
		t.Fatalf("directories %v, want one for sim serve", simDirs())
	}
	if _, err := os.Stat(filepath.Join(served, "ehr-fhir.db")); err != nil {
		t.Fatalf("sim serve's stores: %v", err)
	}

	// While sim serve runs, its directory stays, however old.
	age(served)
	own := startAndClose()
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Fatalf("a closed world's own directory: %v, want it removed", err)
	}
	if _, err := os.Stat(served); err != nil {
		t.Fatalf("a running sim's directory: %v, want it kept", err)
	}

	if err := srv.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()
	if _, err := os.Stat(served); err != nil {
		t.Fatalf("after kill -9: %v, want the directory left behind", err)
	}

	// Just after the kill the directory is not stale yet: it could be a
	// sim that has made its directory and not locked it yet.
	if err := os.Chtimes(served, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	startAndClose()
	if _, err := os.Stat(served); err != nil {
		t.Fatalf("a directory changed less than a minute ago: %v, want it kept", err)
	}

	age(served)
	startAndClose()
	if _, err := os.Stat(served); !os.IsNotExist(err) {
		t.Fatalf("the killed sim's directory, left a minute: %v, want it removed", err)
	}
	if got := simDirs(); !slices.Equal(got, kept) {
		t.Fatalf("left in %s: %v, want %v (no lock file; not a temporary name; a --data directory; another user's)", root, got, kept)
	}
}
