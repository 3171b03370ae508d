package synth

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkGenerate1M: 1 000 000 EHR patients and, with other-only
// patients making up the difference, as many at Other, with the process's
// peak resident memory over the generation. Minutes and gigabytes: only
// with SIM_BENCH_LARGE=1 (and -benchtime=1x).
func BenchmarkGenerate1M(b *testing.B) {
	if os.Getenv("SIM_BENCH_LARGE") == "" {
		b.Skip("set SIM_BENCH_LARGE=1 to generate 1 M patients per side")
	}
	benchmarkGeneratePeak(b, MaxPatients)
}

// BenchmarkGeneratePeak100k is BenchmarkGenerate100k with the peak
// resident memory reported too.
func BenchmarkGeneratePeak100k(b *testing.B) { benchmarkGeneratePeak(b, 100_000) }

// benchmarkGeneratePeak runs benchmarkGenerate after resetting the
// process's peak resident set (VmHWM), and reports that peak in MB; the
// base of a test binary (about 10-20 MB) is included.
func benchmarkGeneratePeak(b *testing.B, patients int) {
	resetPeakRSS(b)
	benchmarkGenerate(b, patients)
	if kb, ok := procStatusKB("VmHWM"); ok {
		b.ReportMetric(float64(kb)/1024, "peak-RSS-MB")
	}
}

// resetPeakRSS sets VmHWM back to the current resident set (Linux: "5" to
// /proc/self/clear_refs), so that the peak is this benchmark's own.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak resident set (%v): the peak is the process's", err)
	}
}

// procStatusKB reads a "Name:  N kB" line of /proc/self/status.
func procStatusKB(name string) (int64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return n, err == nil
	}
	return 0, false
}
