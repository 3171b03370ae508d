package trace_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/smart-sim/sim/internal/trace"
)

func TestRecorderKeepsNewestFlowsInOrder(t *testing.T) {
	r := trace.NewRecorder(2, nil)
	for i := range 3 {
		r.Add(trace.Event{Flow: fmt.Sprint("f", i), Kind: trace.KindHTTP, From: trace.App, To: trace.EHRAS})
	}
	r.Add(trace.Event{Flow: "f2", Kind: trace.KindDecision, From: trace.OtherAS, To: trace.OtherAS, Decision: "refused"})
	flows := r.Flows()
	if len(flows) != 2 || flows[0].ID != "f2" || flows[1].ID != "f1" {
		t.Fatalf("flows = %+v, want f2, f1", flows)
	}
	if got := flows[0].Events; len(got) != 2 || got[0].Seq >= got[1].Seq {
		t.Fatalf("events of f2 = %+v, want two in sequence order", got)
	}
	if _, ok := r.Flow("f0"); ok {
		t.Fatal("f0 still kept; want it dropped as the oldest")
	}
}

func TestRecorderConcurrentAddAndWatch(t *testing.T) {
	r := trace.NewRecorder(10, nil)
	ch, stop := r.Watch()
	defer stop()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				r.Add(trace.Event{Flow: fmt.Sprint("f", i%3)})
				_ = r.Flows()
			}
		}()
	}
	wg.Wait()
	select {
	case <-ch:
	default:
		t.Fatal("watcher not notified")
	}
	n := 0
	for _, f := range r.Flows() {
		n += len(f.Events)
	}
	if n != 400 {
		t.Fatalf("events = %d, want 400", n)
	}
}

// TestRecorderBoundsEventsPerFlow: a flow that keeps growing (FHIR reads
// nobody names) keeps its newest events and counts the ones let go.
func TestRecorderBoundsEventsPerFlow(t *testing.T) {
	r := trace.NewRecorder(10, nil)
	for range 2500 {
		r.Add(trace.Event{Kind: trace.KindHTTP, From: trace.App, To: trace.EHRFHIR})
	}
	f, ok := r.Flow("unattributed")
	if !ok || len(f.Events) > 1000 || len(f.Events) < 500 {
		t.Fatalf("%d events kept, want 500–1000", len(f.Events))
	}
	if last := f.Events[len(f.Events)-1].Seq; last != 2500 || f.Dropped+len(f.Events) != 2500 {
		t.Fatalf("last seq %d, dropped %d + kept %d, want 2500 in all", last, f.Dropped, len(f.Events))
	}
}
