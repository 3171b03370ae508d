package synth

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smart-sim/sim/fhirstore"
	"github.com/smart-sim/sim/internal/gcfloor"
)

// BenchmarkGenerate1M: what `sim serve` does with a 1 M world: 1 000 000
// EHR patients and, with other-only patients making up the difference, as
// many at Other, generated and streamed into two new SQLite FHIR stores on
// disk (in $TMPDIR, about 25 GB while it runs; removed after), with the
// process's peak resident memory, under the soft memory limit the sim
// binary sets (unless GOMEMLIMIT is set). Minutes and gigabytes: only with
// SIM_BENCH_LARGE=1 (and -benchtime=1x).
func BenchmarkGenerate1M(b *testing.B) {
	if os.Getenv("SIM_BENCH_LARGE") == "" {
		b.Skip("set SIM_BENCH_LARGE=1 to generate 1 M patients per side")
	}
	benchmarkGenerateLoad(b, MaxPatients)
}

// BenchmarkGenerateLoad100k is BenchmarkGenerate1M at 100 000 patients
// per side.
func BenchmarkGenerateLoad100k(b *testing.B) { benchmarkGenerateLoad(b, 100_000) }

// benchmarkGenerateLoad streams a world into two new stores per op and
// reports patients/s, resources, the stores' size and the peak RSS.
func benchmarkGenerateLoad(b *testing.B, patients int) {
	b.Cleanup(gcfloor.LimitMemoryUnlessSet()) // the sim binary's
	cfg := sizedConfig(patients)
	ctx := context.Background()
	resetPeakRSS(b)
	var res, people int
	var size int64
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		t0 := time.Now()
		sum, n, err := streamIntoStores(ctx, cfg, dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%d resources, %d patients per side: %v", n, patients, time.Since(t0))
		res, people = n, sum.Counts["ehr/Patient"]+sum.Counts["other/Patient"]
		b.StopTimer()
		size = dirSize(dir)
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(people)*float64(b.N)/b.Elapsed().Seconds(), "patients/s")
	b.ReportMetric(float64(res), "resources")
	b.ReportMetric(float64(size)/1e6, "store-MB")
	if kb, ok := procStatusKB("VmHWM"); ok {
		b.ReportMetric(float64(kb)/1024, "peak-RSS-MB")
	}
}

// streamIntoStores is world start-up's load: Stream into one Loader per
// side (each side on its own goroutine, as Stream delivers them).
func streamIntoStores(ctx context.Context, cfg Config, dir string) (*Summary, int, error) {
	loaders := map[string]*fhirstore.Loader{}
	var n [2]int
	for _, side := range []string{SideEHR, SideOther} {
		st, err := fhirstore.Open(ctx, fhirstore.Options{Path: filepath.Join(dir, side+".db")})
		if err != nil {
			return nil, 0, err
		}
		defer st.Close()
		l, err := st.NewLoader(ctx, fhirstore.LoadOptions{Canonical: true})
		if err != nil {
			return nil, 0, err
		}
		loaders[side] = l
	}
	sum, err := Stream(cfg, func(side string, batch []Resource) error {
		l := loaders[side]
		if side == SideEHR {
			n[0] += len(batch)
		} else {
			n[1] += len(batch)
		}
		for _, r := range batch {
			if err := l.Add(ctx, r.JSON); err != nil {
				return err
			}
		}
		return nil
	})
	// The two sides' index builds run at the same time.
	errs := make(chan error, 2)
	for _, l := range loaders {
		go func() { errs <- l.Close(ctx) }()
	}
	for range loaders {
		if cerr := <-errs; err == nil {
			err = cerr
		}
	}
	runtime.GC()
	return sum, n[0] + n[1], err
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
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

// BenchmarkStream1M is the generation alone of BenchmarkGenerate1M: Stream
// into a consumer that only counts, with the peak resident memory (what
// the generator itself holds). Only with SIM_BENCH_LARGE=1.
func BenchmarkStream1M(b *testing.B) {
	if os.Getenv("SIM_BENCH_LARGE") == "" {
		b.Skip("set SIM_BENCH_LARGE=1 to generate 1 M patients per side")
	}
	benchmarkStreamPeak(b, MaxPatients)
}

// BenchmarkStreamPeak100k is BenchmarkStream1M at 100 000 patients.
func BenchmarkStreamPeak100k(b *testing.B) { benchmarkStreamPeak(b, 100_000) }

func benchmarkStreamPeak(b *testing.B, patients int) {
	b.Cleanup(gcfloor.LimitMemoryUnlessSet()) // the sim binary's
	cfg := sizedConfig(patients)
	resetPeakRSS(b)
	var res int
	for b.Loop() {
		var n atomic.Int64
		if _, err := Stream(cfg, func(_ string, batch []Resource) error { n.Add(int64(len(batch))); return nil }); err != nil {
			b.Fatal(err)
		}
		res = int(n.Load())
	}
	b.ReportMetric(float64(2*patients)*float64(b.N)/b.Elapsed().Seconds(), "patients/s")
	b.ReportMetric(float64(res), "resources")
	if kb, ok := procStatusKB("VmHWM"); ok {
		b.ReportMetric(float64(kb)/1024, "peak-RSS-MB")
	}
}
