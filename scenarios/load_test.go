package scenarios_test

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smart-sim/sim/scenarios"
)

// TestLoadSmoke drives a few hundred complete direction-A flows (EHR
// launch, OtherAS launch with the launch-token, reads at both servers)
// through real HTTP and the real forms, 8 at once, and wants every one to
// succeed. It asserts correctness under concurrency, not speed.
func TestLoadSmoke(t *testing.T) {
	r := sharedWorld(t)
	rd := r.Ready()
	flows := 300
	if testing.Short() {
		flows = 60
	}
	var last atomic.Int64
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Flows: flows, Concurrency: 8,
		Progress: func(p scenarios.LoadProgress) { last.Store(p.Done) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows != flows || rep.Failed != 0 || len(rep.Errors) != 0 {
		t.Fatalf("flows %d failed %d errors %v, want %d flows and no failure", rep.Flows, rep.Failed, rep.Errors, flows)
	}
	if rep.Memory != nil {
		t.Errorf("memory %+v reported for a --target run (the target's memory is not this process's)", rep.Memory)
	}
	if last.Load() != int64(flows) {
		t.Errorf("last progress report: %d done, want %d", last.Load(), flows)
	}
	l := rep.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) || rep.FlowsPerS <= 0 {
		t.Errorf("latency %+v, %v flows/s: want 0 < p50 ≤ p95 ≤ p99 ≤ max and a rate", l, rep.FlowsPerS)
	}
	// Every flow went through each endpoint of the direction once.
	want := map[string]int64{
		"POST console /api/launches":   int64(flows),
		"GET ehr /auth/authorize":      int64(flows),
		"POST ehr /auth/token":         int64(flows),
		"GET other /auth/authorize":    int64(flows),
		"POST other /auth/token":       int64(flows),
		"GET ehr /fhir/Patient/{id}":   int64(flows),
		"GET other /fhir/Patient/{id}": int64(flows),
	}
	for _, e := range rep.Endpoints {
		if n, ok := want[e.Endpoint]; ok {
			if e.Count != n {
				t.Errorf("%s: %d requests, want %d", e.Endpoint, e.Count, n)
			}
			delete(want, e.Endpoint)
		}
	}
	if len(want) > 0 {
		t.Errorf("endpoints missing from the report: %v (have %+v)", want, rep.Endpoints)
	}
}

// TestLoadDirections runs each other direction briefly against a world
// OtherAS governs (direction C has its own test: it needs another world).
func TestLoadDirections(t *testing.T) {
	r := sharedWorld(t)
	rd := r.Ready()
	for _, d := range scenarios.Directions() {
		if !d.Wired {
			t.Errorf("direction %s is not wired", d.Name)
			continue
		}
		if d.Name == scenarios.DirectionA || d.Name == scenarios.DirectionC {
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Direction: d.Name, Flows: 20, Concurrency: 4})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Flows != 20 || rep.Failed != 0 {
				t.Fatalf("direction %s: %d flows, %d failed: %v", d.Name, rep.Flows, rep.Failed, rep.Errors)
			}
		})
	}
}

// TestLoadDirectionD checks that every broker flow reached both servers
// through the broker and read each with its own token.
func TestLoadDirectionD(t *testing.T) {
	rd := sharedWorld(t).Ready()
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Direction: scenarios.DirectionD, Flows: 12, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows != 12 || rep.Failed != 0 {
		t.Fatalf("%d flows, %d failed: %v", rep.Flows, rep.Failed, rep.Errors)
	}
	wantEndpoints(t, rep, map[string]int64{
		"GET broker /broker/authorize": 12,
		"POST broker /broker/token":    12,
		"GET ehr /fhir/Patient/{id}":   12,
		"GET other /fhir/Patient/{id}": 12,
		"POST console /api/launches":   12,
	})
}

// TestLoadDirectionC starts its own world, governed by the EHR AS, and
// drives direction C in it: one token per flow reads both servers, and no
// OtherAS is asked. Against a world OtherAS governs, direction C is
// refused before any flow runs.
func TestLoadDirectionC(t *testing.T) {
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Direction: scenarios.DirectionC, Flows: 16, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows != 16 || rep.Failed != 0 {
		t.Fatalf("%d flows, %d failed: %v", rep.Flows, rep.Failed, rep.Errors)
	}
	wantEndpoints(t, rep, map[string]int64{
		"POST ehr /auth/token":         16,
		"GET ehr /fhir/Patient/{id}":   16,
		"GET other /fhir/Patient/{id}": 16,
	})
	for _, e := range rep.Endpoints {
		if strings.Contains(e.Endpoint, " other /auth/") {
			t.Errorf("direction C asked an authorization server at Other: %s", e.Endpoint)
		}
	}
	// An own world: the report carries the process's memory (Linux).
	if _, err := os.Stat("/proc/self/statm"); err == nil {
		m := rep.Memory
		if m == nil || m.StartMB <= 0 || len(m.SamplesMB) < 2 || m.PeakMB < m.EndMB || m.PeakMB < m.StartMB || m.HalfMB <= 0 {
			t.Errorf("memory of an own-world run: %+v, want start, half, end and peak from at least two samples", m)
		}
	}

	rd := sharedWorld(t).Ready()
	_, err = scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Direction: scenarios.DirectionC, Flows: 1})
	if !errors.Is(err, scenarios.ErrLoadInput) || !strings.Contains(err.Error(), "governed_by") {
		t.Fatalf("direction c against a world OtherAS governs: err = %v, want ErrLoadInput naming governed_by", err)
	}
}

// wantEndpoints checks the request counts of the endpoints named.
func wantEndpoints(t *testing.T, rep scenarios.LoadReport, want map[string]int64) {
	t.Helper()
	for _, e := range rep.Endpoints {
		if n, ok := want[e.Endpoint]; ok {
			if e.Count != n {
				t.Errorf("%s: %d requests, want %d", e.Endpoint, e.Count, n)
			}
			delete(want, e.Endpoint)
		}
	}
	if len(want) > 0 {
		t.Errorf("endpoints missing from the report: %v (have %+v)", want, rep.Endpoints)
	}
}

// TestLoadCountsFailuresByKind breaks the introspection OtherAS needs: every
// flow must fail at the second launch, and the report must say so.
func TestLoadCountsFailuresByKind(t *testing.T) {
	r := sharedWorld(t)
	rd := r.Ready()
	if err := r.Faults.Set(scenarios.FaultIntrospection, scenarios.ServerFault{Status: 500}); err != nil {
		t.Fatal(err)
	}
	defer r.Faults.Clear()
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Flows: 6, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows != 6 || rep.Failed != 6 {
		t.Fatalf("%d flows, %d failed, want all 6 failed", rep.Flows, rep.Failed)
	}
	if len(rep.Errors) != 1 {
		t.Fatalf("errors %v: want one kind", rep.Errors)
	}
	for k, n := range rep.Errors {
		if !strings.HasPrefix(k, "other: ") || n != 6 {
			t.Fatalf("errors %v: want 6 failures at step other", rep.Errors)
		}
	}
}

// TestLoadRate starts flows on a schedule: 40 flows at 20 a second take
// the 1.95 s until the last is due, however fast each flow runs.
func TestLoadRate(t *testing.T) {
	rd := sharedWorld(t).Ready()
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Direction: "ehr", Flows: 40, Concurrency: 2, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows != 40 || rep.Failed != 0 || rep.Rate != 20 {
		t.Fatalf("%d flows, %d failed (%v), rate %v: want 40, none failed, rate 20", rep.Flows, rep.Failed, rep.Errors, rep.Rate)
	}
	if rep.ElapsedS < 1.95 {
		t.Fatalf("elapsed %.2fs: the flows did not wait until they were due (the last at 1.95 s)", rep.ElapsedS)
	}

	// For a second, with a worker for each flow due (at 0, 50, …, 950 ms,
	// and perhaps one at the very end): every flow begins when due, so
	// none is reported left behind, however slow the machine. The flows
	// still under way at the end are cut short and not counted, so only
	// an upper bound holds for those done.
	rep, err = scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Direction: "ehr", Duration: time.Second, Concurrency: 21, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows > 21 || rep.Failed != 0 || rep.DueNotStarted != 0 {
		t.Fatalf("%d flows, %d failed (%v), %d due and not begun: want at most the 21 due done, none failed or left behind", rep.Flows, rep.Failed, rep.Errors, rep.DueNotStarted)
	}
}

// TestLoadRateCountsTheWait: flows due every 10 ms on one worker, each
// slowed by 40 ms at OtherAS's introspection, fall further behind their
// schedule one after the other. Their latency counts from when they were
// due, so the late ones show the wait: a closed loop would report about
// 40 ms for every flow and hide it.
func TestLoadRateCountsTheWait(t *testing.T) {
	r := sharedWorld(t)
	rd := r.Ready()
	const delay = 40 * time.Millisecond
	if err := r.Faults.Set(scenarios.FaultIntrospection, scenarios.ServerFault{Delay: delay}); err != nil {
		t.Fatal(err)
	}
	defer r.Faults.Clear()
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Flows: 8, Concurrency: 1, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 {
		t.Fatalf("%d failed (%v)", rep.Failed, rep.Errors)
	}
	// The last flow waited for the 7 before it, at least 30 ms behind
	// schedule each: at least 210 ms, plus its own 40.
	if want := 250.0; rep.LatencyMS.Max < want {
		t.Fatalf("latency %+v: want the last flow's at least %.0f ms, its wait for the 7 before it counted", rep.LatencyMS, want)
	}

	// For a second instead of 8 flows: 100 are due (at 0, 10, …, 990
	// ms), at most 1 s / 40 ms = 25 finish, and the report says how many
	// were never begun: all the others but the one under way at the end.
	rep, err = scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Duration: time.Second, Concurrency: 1, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if n := rep.Flows; n > 25 || rep.DueNotStarted < 100-n-1 || rep.DueNotStarted > 100-n {
		t.Fatalf("%d flows done, %d due and not begun: want at most 25 done, and the 100 due less those done and the one cut short", rep.Flows, rep.DueNotStarted)
	}
}

func TestLoadDuration(t *testing.T) {
	r := sharedWorld(t)
	rd := r.Ready()
	// A second, so that a slow or busy machine still finishes a flow
	// under the race detector (300 ms did not, once, beside two fuzzers).
	rep, err := scenarios.Load(t.Context(), scenarios.LoadOptions{Target: &rd, Direction: "ehr", Duration: time.Second, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flows == 0 || rep.Failed != 0 {
		t.Fatalf("%d flows, %d failed (%v): want some flows and none failed (a flow cut by the deadline is not a failure)", rep.Flows, rep.Failed, rep.Errors)
	}
	if rep.ElapsedS < 1 || rep.ElapsedS > 6 {
		t.Errorf("elapsed %.2fs for a 1s run", rep.ElapsedS)
	}
}

// TestLoadInterrupted cancels a run while flows are under way, as Ctrl-C
// does: the report counts the flows that finished, and a flow cut short
// by the interruption is not a failure.
func TestLoadInterrupted(t *testing.T) {
	rd := sharedWorld(t).Ready()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	opt := scenarios.LoadOptions{Target: &rd, Duration: 30 * time.Second, Concurrency: 4,
		Progress: func(p scenarios.LoadProgress) {
			if p.Done >= 20 {
				cancel()
			}
		}}
	rep, err := scenarios.Load(ctx, opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the interruption", err)
	}
	if rep.Flows < 20 || rep.Failed != 0 {
		t.Fatalf("%d flows, %d failed (%v): want at least 20 and none failed (a flow cut by the interruption is not a failure)", rep.Flows, rep.Failed, rep.Errors)
	}
	if rep.ElapsedS > 20 {
		t.Errorf("elapsed %.2fs: the run did not stop when interrupted", rep.ElapsedS)
	}
}

func TestLoadRefusesBadOptions(t *testing.T) {
	rd := sharedWorld(t).Ready()
	for _, tc := range []struct {
		name string
		opt  scenarios.LoadOptions
	}{
		{"unknown direction", scenarios.LoadOptions{Direction: "z"}},
		{"direction c, OtherAS runs", scenarios.LoadOptions{Direction: scenarios.DirectionC}},
		{"negative flows", scenarios.LoadOptions{Flows: -1}},
		{"negative rate", scenarios.LoadOptions{Rate: -1}},
		{"rate NaN", scenarios.LoadOptions{Rate: math.NaN()}},
		{"rate infinite", scenarios.LoadOptions{Rate: math.Inf(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Target = &rd
			if _, err := scenarios.Load(t.Context(), tc.opt); !errors.Is(err, scenarios.ErrLoadInput) {
				t.Fatalf("err = %v, want ErrLoadInput", err)
			}
		})
	}
}
