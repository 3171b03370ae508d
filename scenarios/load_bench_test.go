package scenarios

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/gcfloor"
)

// benchPlan starts the default world and prepares direction d's flows.
func benchPlan(b *testing.B, d string) (*loadPlan, *Flow) {
	b.Helper()
	b.Cleanup(gcfloor.StartUnlessSet().Stop) // the sim binary's collector policy
	r, err := Start(b.Context(), DefaultWorld(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(context.Background()) })
	rd := r.Ready()
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second}
	b.Cleanup(tr.CloseIdleConnections)
	rn := &runner{sc: &Scenario{Name: "bench", World: r.World}, ready: rd, now: time.Now,
		api: &http.Client{Transport: tr}, transport: tr}
	if rn.view, err = rn.fetchWorld(b.Context()); err != nil {
		b.Fatal(err)
	}
	plan, err := newLoadPlan(rn, r.World)
	if err != nil {
		b.Fatal(err)
	}
	dir, _ := LookupDirection(d)
	return plan, &Flow{Name: "bench", User: plan.user.Username, Steps: dir.steps(plan)}
}

// BenchmarkTwoServerFlow is one complete direction-A flow at a time:
// EHR launch with launch-token, OtherAS launch, a Patient read at each
// server; about fifteen HTTP exchanges through the real forms. Goal: ≤ 4 ms.
func BenchmarkTwoServerFlow(b *testing.B) {
	plan, f := benchPlan(b, DirectionA)
	var n int64
	for b.Loop() {
		n++
		if kind := plan.runOne(b.Context(), f, n); kind != "" {
			b.Fatal(kind)
		}
	}
}

// BenchmarkTwoServerFlowParallel runs direction-A flows 16 at a time
// (8 goroutines per core on 2 cores). Goal: ≥ 800 flows/s.
func BenchmarkTwoServerFlowParallel(b *testing.B) {
	plan, f := benchPlan(b, DirectionA)
	var n atomic.Int64
	b.SetParallelism(max(1, 16/max(1, testingProcs())))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if kind := plan.runOne(b.Context(), f, n.Add(1)); kind != "" {
				b.Error(kind)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkFHIRReadWithBearer is a Patient read at the EHR FHIR server
// through the whole stack (loopback HTTP, trace and access-log middleware,
// the EHR AS's bearer check, the SQLite read), 16 at a time, with an access
// token from a real EHR launch. Goal: ≥ 20k reads/s.
func BenchmarkFHIRReadWithBearer(b *testing.B) {
	plan, at, patient := benchLaunch(b)
	client := &http.Client{Transport: plan.rn.transport}
	benchBearerGET(b, client, plan.rn.ready.EHRFHIR+"/Patient/"+patient, at, "reads/s")
}

// benchLaunch starts the default world and runs one EHR launch, returning
// the plan with the launch's access token and patient id.
func benchLaunch(b *testing.B) (plan *loadPlan, at, patient string) {
	b.Helper()
	plan, f := benchPlan(b, DirectionEHR)
	plan.afterFlow = func(fl *flowRun) {
		at, patient = fl.steps["ehr"].values["access_token"], fl.steps["ehr"].values["patient"]
	}
	if kind := plan.runOne(b.Context(), f, 1); kind != "" || at == "" {
		b.Fatalf("launch: %q", kind)
	}
	return plan, at, patient
}

// bearerGET sends GET u with the bearer token at.
func bearerGET(ctx context.Context, client *http.Client, u, at string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+at)
	return client.Do(req)
}

// benchBearerGET measures GET u with the bearer token at, 8 goroutines
// per core, each answer read to the end and required to be 200 OK; the
// rate is reported as unit.
func benchBearerGET(b *testing.B, client *http.Client, u, at, unit string) {
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := bearerGET(b.Context(), client, u, at)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}
