package synth

import (
	"bytes"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
)

// TestStreamMatchesGenerate: streaming into NDJSON files gives the bytes
// WriteNDJSON writes for Generate's population, and the same summary.
func TestStreamMatchesGenerate(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(kind)
			cfg.EHR.Patients = batchSize/2 + 17 // several batches per side
			pop := mustGenerate(t, cfg)
			dirA, dirB := t.TempDir(), t.TempDir()
			countsA, err := WriteNDJSON(pop, dirA)
			if err != nil {
				t.Fatal(err)
			}
			w, err := NewNDJSONWriter(dirB)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := Stream(cfg, w.Write)
			if err != nil {
				t.Fatal(err)
			}
			countsB, err := w.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(countsA, countsB) {
				t.Errorf("counts %v, streamed %v", countsA, countsB)
			}
			a, b := readTree(t, dirA), readTree(t, dirB)
			if len(a) != len(b) || len(a) < 5 {
				t.Fatalf("%d files, streamed %d", len(a), len(b))
			}
			for name, data := range a {
				if !bytes.Equal(data, b[name]) {
					t.Errorf("%s differs when streamed", name)
				}
			}
			if !reflect.DeepEqual(*sum, pop.Summary) {
				t.Errorf("streamed summary differs from Generate's")
			}
			if sum.Counts["ehr/Patient"] != cfg.EHR.Patients || len(sum.Truth) != cfg.EHR.Patients {
				t.Errorf("counts %v, %d truths", sum.Counts, len(sum.Truth))
			}
		})
	}
}

// TestStreamStopsOnConsumerError: the first error of a consumer ends the
// generation early and is returned; no batch is delivered after it.
func TestStreamStopsOnConsumerError(t *testing.T) {
	cfg := testConfig(KindLab)
	cfg.EHR.Patients = 20 * batchSize
	boom := errors.New("disk full")
	var calls, after atomic.Int64
	var failed atomic.Bool
	_, err := Stream(cfg, func(side string, batch []Resource) error {
		if failed.Load() {
			after.Add(1)
		}
		if calls.Add(1) == 3 {
			failed.Store(true)
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	// The EHR side alone is about 5.5 resources per patient: 110 batches.
	if n := calls.Load(); n > 3+2 || after.Load() > 0 {
		t.Errorf("%d calls, %d after the error", n, after.Load())
	}
	if _, err := Stream(cfg, nil); err == nil {
		t.Error("no consumer: no error")
	}
}

// TestNDJSONWriterRejects: an unknown side or type is an error, not a file.
func TestNDJSONWriterRejects(t *testing.T) {
	w, err := NewNDJSONWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("both", []Resource{{Type: "Patient", ID: "p", JSON: []byte("{}")}}); err == nil {
		t.Error("unknown side accepted")
	}
	if err := w.Write(SideEHR, []Resource{{Type: "../x", ID: "p", JSON: []byte("{}")}}); err == nil {
		t.Error("unknown type accepted")
	}
	if counts, err := w.Close(); err != nil || len(counts) != 0 {
		t.Errorf("close: %v %v", counts, err)
	}
}
