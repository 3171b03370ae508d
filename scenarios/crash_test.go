package scenarios

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// TestCrashDuringLoad: `sim serve --data DIR` is killed with SIGKILL in the
// middle of a load run, then started again on the same DIR. Every store
// file must pass SQLite's integrity check, every refresh token whose token
// response reached the app before the kill must still work (once: it is
// single-use), a refresh token rotated before the kill must stay refused,
// and the FHIR servers must answer as before.
func TestCrashDuringLoad(t *testing.T) {
	bin := buildSimToKill(t)
	data := filepath.Join(t.TempDir(), "data")

	// Each run listens on ephemeral ports (--port 0), so the restart
	// serves every origin on a new port: refresh families name their
	// servers by role, and refreshed tokens are for the current URLs.
	srv, rd := startServe(t, bin, data)

	// Tokens issued before the load: one of them is rotated now, so only
	// its successor may work after the restart.
	var mu sync.Mutex
	var kept []string
	keep := func(fl *flowRun) {
		if rt := fl.steps["ehr"].values["refresh_token"]; rt != "" {
			mu.Lock()
			kept = append(kept, rt)
			mu.Unlock()
		}
	}
	rep, err := load(t.Context(), LoadOptions{Target: &rd, Flows: 10, Concurrency: 2}, keep)
	if err != nil || rep.Failed != 0 || len(kept) != 10 {
		t.Fatalf("load before the crash: err %v, %d failed (%v), %d refresh tokens", err, rep.Failed, rep.Errors, len(kept))
	}
	rotated := kept[0]
	if st, body := refresh(t, rd, rotated); st != http.StatusOK {
		t.Fatalf("refresh before the crash: %d %s", st, body)
	} else {
		kept[0] = body["refresh_token"].(string)
	}

	// Load with 4 workers, killed after a second: flows are mid-way.
	loadCtx, stopLoad := context.WithCancel(t.Context())
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		_, _ = load(loadCtx, LoadOptions{Target: &rd, Duration: 20 * time.Second, Concurrency: 4}, keep)
	}()
	// Kill once the load is well under way (polling, not a fixed sleep: a
	// busy CI machine may be slow to start the workers).
	var before int
	for deadline := time.Now().Add(30 * time.Second); ; {
		mu.Lock()
		before = len(kept)
		mu.Unlock()
		if before >= 15 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()
	// Tokens kept from here on were answered before the kill too (the
	// answer was read before the process died), but the count above
	// proves the load was running.
	stopLoad()
	<-loadDone
	if before < 15 {
		t.Fatalf("only %d flows completed before the kill: the load did not run", before-10)
	}

	for _, f := range dataFiles {
		integrityCheck(t, filepath.Join(data, f))
	}

	srv2, rd2 := startServe(t, bin, data)
	if rd2.EHRFHIR == rd.EHRFHIR {
		t.Fatalf("the restart serves the EHR at the same URL %s: the test needs other ports", rd.EHRFHIR)
	}
	defer func() {
		_ = srv2.Process.Signal(syscall.SIGTERM)
		_ = srv2.Wait()
	}()
	mu.Lock()
	tokens := append([]string(nil), kept...)
	mu.Unlock()
	for i, rt := range tokens {
		st, body := refresh(t, rd2, rt)
		if st != http.StatusOK {
			t.Fatalf("refresh token %d of %d after the restart: status %d %v", i+1, len(tokens), st, body["error"])
		}
		if i == 0 {
			at, _ := body["access_token"].(string)
			pat, _ := body["patient"].(string)
			if code := bearerGet(t, rd2.EHRFHIR+"/Patient/"+pat, at); code != http.StatusOK {
				t.Fatalf("read with a refreshed token after the restart: %d", code)
			}
		}
	}
	if st, _ := refresh(t, rd2, rotated); st != http.StatusBadRequest {
		t.Fatalf("a refresh token rotated before the crash: status %d after the restart, want 400", st)
	}
	// The world still serves complete flows.
	rep, err = load(t.Context(), LoadOptions{Target: &rd2, Flows: 10, Concurrency: 2}, nil)
	if err != nil || rep.Failed != 0 {
		t.Fatalf("load after the restart: err %v, %d failed (%v)", err, rep.Failed, rep.Errors)
	}
	t.Logf("%d refresh tokens survived the kill", len(tokens))
}

// buildSimToKill builds the sim binary into a temporary directory, for
// a test that kills it. It skips the test with -short, and on Windows (no
// SIGKILL, no flock).
func buildSimToKill(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the sim binary and kills it")
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL and flock")
	}
	return buildSim(t)
}

// buildSim builds the sim binary into a temporary directory.
func buildSim(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "sim")
	build := exec.CommandContext(tb.Context(), "go", "build", "-o", bin, "github.com/smart-sim/sim/cmd/sim")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServe starts `sim serve` on ephemeral ports, on the data directory
// dir ("": a temporary one), and waits for its ready-file.
func startServe(tb testing.TB, bin, dir string) (*exec.Cmd, Ready) {
	tb.Helper()
	readyFile := filepath.Join(tb.TempDir(), "ready.json")
	args := []string{"serve", "--port", "0", "--ready-file", readyFile, "--log-level", "error"}
	if dir != "" {
		args = append(args, "--data", dir)
	}
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rd Ready
		if b, err := os.ReadFile(readyFile); err == nil && json.Unmarshal(b, &rd) == nil && rd.API != "" {
			return cmd, rd
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sim serve wrote no ready-file; stderr: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refresh redeems rt at the EHR AS the target's discovery names.
func refresh(t *testing.T, rd Ready, rt string) (int, map[string]any) {
	t.Helper()
	var d discovery
	resp, err := http.Get(rd.EHRFHIR + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(d.TokenEndpoint, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {loadPublicApp}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func bearerGet(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// integrityCheck opens a store file left by a killed process (SQLite
// recovers its WAL) and runs PRAGMA integrity_check.
func integrityCheck(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("store file %s: %v", filepath.Base(path), err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check of %s: %q %v", filepath.Base(path), res, err)
	}
}
