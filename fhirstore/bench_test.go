package fhirstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func benchPatients(n int) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range n {
		out[i] = json.RawMessage(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"urn:mrn","value":"%d"}],"name":[{"family":"Family%d","given":["Given%d"]}],"gender":"female","birthDate":"19%02d-01-01"}`, i, i, i%997, i%113, i%100))
	}
	return out
}

func BenchmarkPatientRead(b *testing.B) {
	ts := newTestServer(b, nil)
	if err := ts.store.Load(context.Background(), benchPatients(1000), false); err != nil {
		b.Fatal(err)
	}
	b.Run("loopback", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				resp, err := client.Get(ts.base + "/Patient/p" + fmt.Sprint(i%1000))
				if err != nil {
					b.Fatal(err)
				}
				var buf [2048]byte
				for {
					if _, err := resp.Body.Read(buf[:]); err != nil {
						break
					}
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	})
	b.Run("handler", func(b *testing.B) {
		h := NewHandler(HandlerConfig{Store: ts.store, BaseURL: ts.base})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				req := httptest.NewRequest(http.MethodGet, "/fhir/Patient/p"+fmt.Sprint(i%1000), nil)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	})
}

// benchStore100k opens a store of 100k small Patients, built once and
// cached in the temp directory across runs.
func benchStore100k(b *testing.B) *Store {
	b.Helper()
	const n = 100_000
	path := filepath.Join(os.TempDir(), "sim-fhirstore-bench-100k-v1.db")
	ctx := context.Background()
	if _, err := os.Stat(path + ".done"); err != nil {
		os.Remove(path)
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
		s, err := Open(ctx, Options{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := s.Load(ctx, benchPatients(n), false); err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded %d patients in %v", n, time.Since(start))
		s.Close()
		os.WriteFile(path+".done", nil, 0o644)
	}
	s, err := Open(ctx, Options{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkIdentifierSearch100k(b *testing.B) {
	s := benchStore100k(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprint((i * 7919) % 100_000)
		t0 := time.Now()
		res, err := s.Search(ctx, "Patient", url.Values{"identifier": {"urn:mrn|" + v}})
		lat = append(lat, time.Since(t0))
		if err != nil || res.Total != 1 {
			b.Fatalf("search %s: %v %+v", v, err, res)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

func BenchmarkCreate(b *testing.B) {
	ts := newTestServer(b, nil)
	h := NewHandler(HandlerConfig{Store: ts.store, BaseURL: ts.base})
	body := strings.Replace(patientJSON, `"gender"`, `"active":true,"gender"`, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/fhir/Patient", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/fhir+json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 201 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkLoadIntoExisting loads 20 000 Patients (four batches) into a
// store that already holds a resource: the path of a load that is not
// initial, which writes its index rows straight into the index tables.
func BenchmarkLoadIntoExisting(b *testing.B) {
	ctx := context.Background()
	patients := benchPatients(20_000)
	for b.Loop() {
		b.StopTimer()
		s := openTestStore(b, "")
		if err := s.Load(ctx, rawList(`{"resourceType":"Practitioner","id":"first"}`), false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Load(ctx, patients, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(patients))/b.Elapsed().Seconds(), "resources/s")
}
