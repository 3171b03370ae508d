package scenarios

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkServeRSS builds the sim binary, starts `sim serve` on the
// default world and reports its resident memory: idle after start-up,
// then after 500 direction-A flows (8 at a time) and its peak.
func BenchmarkServeRSS(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	bin := buildSim(b)
	var idle, after, peak int64
	for b.Loop() {
		cmd, rd := startServe(b, bin, "")
		pid := cmd.Process.Pid
		idle = procKB(b, pid, "VmRSS")
		rep, err := Load(b.Context(), LoadOptions{Target: &rd, Flows: 500, Concurrency: 8})
		if err != nil || rep.Failed != 0 {
			b.Fatalf("load: %v, %d failed: %v", err, rep.Failed, rep.Errors)
		}
		after, peak = procKB(b, pid, "VmRSS"), procKB(b, pid, "VmHWM")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	b.ReportMetric(float64(idle)/1024, "idle-RSS-MB")
	b.ReportMetric(float64(after)/1024, "after-500-flows-RSS-MB")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
}

// procKB reads a "Name:  N kB" line of /proc/PID/status.
func procKB(b *testing.B, pid int, name string) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/status has no %s", pid, name)
	return 0
}
