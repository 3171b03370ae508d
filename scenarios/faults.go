package scenarios

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultTarget names what a fault breaks: the calls sim's own servers make
// to one another (never the app's calls).
type FaultTarget string

const (
	// FaultEHRAS breaks every call OtherAS makes to the EHR authorization
	// server (discovery, JWKS, Backend Services token, introspection).
	FaultEHRAS FaultTarget = "ehr_as"
	// FaultIntrospection breaks only the EHR's introspection endpoint.
	FaultIntrospection FaultTarget = "introspection"
	// FaultEHRFHIR breaks OtherAS's reads of the EHR FHIR server.
	FaultEHRFHIR FaultTarget = "ehr_fhir"
)

// ServerFault is how a target misbehaves. The zero ServerFault is healthy.
type ServerFault struct {
	// Down makes calls fail as if nothing listened.
	Down bool `json:"down,omitempty"`
	// Delay holds each call this long before it is sent (a slow server:
	// longer than OtherAS's timeout means a timeout).
	Delay time.Duration `json:"delay_ns,omitempty"`
	// Status answers every call with this HTTP status instead.
	Status int `json:"status,omitempty"`
}

// Faults holds the faults in force. It is safe for concurrent use.
type Faults struct {
	mu       sync.Mutex
	byTarget map[FaultTarget]ServerFault
	ready    Ready
}

// Set puts f in force on target (the zero ServerFault clears it).
func (f *Faults) Set(target FaultTarget, fault ServerFault) error {
	switch target {
	case FaultEHRAS, FaultIntrospection, FaultEHRFHIR:
	default:
		return fmt.Errorf("unknown fault target %q (expected ehr_as, introspection or ehr_fhir)", target)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byTarget == nil {
		f.byTarget = map[FaultTarget]ServerFault{}
	}
	if fault == (ServerFault{}) {
		delete(f.byTarget, target)
	} else {
		f.byTarget[target] = fault
	}
	return nil
}

// Replace puts exactly these faults in force.
func (f *Faults) Replace(next map[FaultTarget]ServerFault) error {
	for target := range next {
		switch target {
		case FaultEHRAS, FaultIntrospection, FaultEHRFHIR:
		default:
			return fmt.Errorf("unknown fault target %q (expected ehr_as, introspection or ehr_fhir)", target)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byTarget = map[FaultTarget]ServerFault{}
	for t, x := range next {
		if x != (ServerFault{}) {
			f.byTarget[t] = x
		}
	}
	return nil
}

// Snapshot returns the faults in force.
func (f *Faults) Snapshot() map[FaultTarget]ServerFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[FaultTarget]ServerFault, len(f.byTarget))
	for t, x := range f.byTarget {
		out[t] = x
	}
	return out
}

// Clear removes every fault.
func (f *Faults) Clear() {
	f.mu.Lock()
	f.byTarget = nil
	f.mu.Unlock()
}

// match returns the fault for a request, if any.
func (f *Faults) match(u string) (ServerFault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byTarget) == 0 {
		return ServerFault{}, false
	}
	// The most specific target wins.
	if x, ok := f.byTarget[FaultIntrospection]; ok && strings.HasPrefix(u, f.ready.EHRIssuer+"/introspect") {
		return x, true
	}
	if x, ok := f.byTarget[FaultEHRAS]; ok && (strings.HasPrefix(u, f.ready.EHRIssuer+"/") || strings.HasPrefix(u, f.ready.EHRFHIR+"/.well-known/")) {
		return x, true
	}
	if x, ok := f.byTarget[FaultEHRFHIR]; ok && strings.HasPrefix(u, f.ready.EHRFHIR+"/") && !strings.HasPrefix(u, f.ready.EHRFHIR+"/.well-known/") {
		return x, true
	}
	return ServerFault{}, false
}

// faultTransport applies the faults in force to outbound calls.
type faultTransport struct {
	faults *Faults
	base   http.RoundTripper
}

func (t faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	fault, ok := t.faults.match(req.URL.String())
	if !ok {
		return t.base.RoundTrip(req)
	}
	if !sleepFor(req.Context(), fault.Delay) {
		return nil, req.Context().Err()
	}
	if fault.Down {
		return nil, fmt.Errorf("dial %s: connection refused (fault injected)", req.URL.Host)
	}
	if fault.Status != 0 {
		body := fmt.Sprintf(`{"error":"server_error","error_description":"fault injected: status %d"}`, fault.Status)
		return &http.Response{
			StatusCode: fault.Status, Status: fmt.Sprintf("%d %s", fault.Status, http.StatusText(fault.Status)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"application/json"}},
			Body:    io.NopCloser(strings.NewReader(body)),
			Request: req, ContentLength: int64(len(body)),
		}, nil
	}
	return t.base.RoundTrip(req)
}

// Clock is the servers' shared clock: the base clock plus an adjustable
// skew, so scenarios can let tokens expire without waiting.
type Clock struct {
	base   func() time.Time
	offset atomic.Int64
}

// Now is the skewed time.
func (c *Clock) Now() time.Time { return c.base().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward (or back, with a negative d).
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// Skew is how far the clock is moved from the base clock.
func (c *Clock) Skew() time.Duration { return time.Duration(c.offset.Load()) }

// Reset removes any skew.
func (c *Clock) Reset() { c.offset.Store(0) }
