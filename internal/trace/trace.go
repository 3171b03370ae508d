package trace

import (
	"context"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Party is a lifeline in a sequence diagram.
type Party string

// The parties of the draft's diagrams, in lifeline order.
const (
	App       Party = "App"
	User      Party = "User"
	Brands    Party = "Brands"
	EHRFHIR   Party = "EHR FHIR"
	EHRAS     Party = "EHR AS"
	OtherFHIR Party = "Other FHIR"
	OtherAS   Party = "OtherAS"
)

// Parties lists the lifelines in the order diagrams draw them.
var Parties = []Party{User, App, Brands, EHRFHIR, EHRAS, OtherFHIR, OtherAS}

// Kind says what an event is.
type Kind string

const (
	// KindHTTP is a request and its response between two parties.
	KindHTTP Kind = "http"
	// KindDecision is something a party decided (a refused scope, a match
	// found or not); From == To.
	KindDecision Kind = "decision"
	// KindUser is a user interaction (filled a form, clicked approve).
	KindUser Kind = "user"
)

// Message is one side of an HTTP exchange, already redacted.
type Message struct {
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	// Claims holds decoded JWT claims found in the message (by field name),
	// with the signature dropped.
	Claims map[string]any `json:"claims,omitempty"`
}

// Event is one recorded exchange or decision.
type Event struct {
	Seq      int64         `json:"seq"`
	Flow     string        `json:"flow"`
	At       time.Time     `json:"at"`
	Kind     Kind          `json:"kind"`
	From     Party         `json:"from"`
	To       Party         `json:"to"`
	Method   string        `json:"method,omitempty"`
	URL      string        `json:"url,omitempty"` // redacted
	Status   int           `json:"status,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Label is the arrow's short text, e.g. "POST /auth/introspect".
	Label string `json:"label"`
	// Decision is what was decided, e.g. "refused patient/*.rs: patient
	// not found in Other's directory".
	Decision string `json:"decision,omitempty"`
	// Error marks a refusal or failure; diagrams draw it in red.
	Error    bool     `json:"error,omitempty"`
	Request  *Message `json:"request,omitempty"`
	Response *Message `json:"response,omitempty"`

	// rawURL, rawRequest and rawResponse are what URL, Request and
	// Response are made from when the event is first read.
	rawURL                  *url.URL
	rawRequest, rawResponse *capturedMessage
}

// pending reports whether the event still holds what it was captured
// from, not yet redacted.
func (e *Event) pending() bool {
	return e.rawURL != nil || e.rawRequest != nil || e.rawResponse != nil
}

// redact builds the redacted URL and messages from the captures.
func (e *Event) redact() {
	if e.rawURL != nil {
		e.URL, e.rawURL = RedactURL(e.rawURL), nil
	}
	if e.rawRequest != nil {
		e.Request, e.rawRequest = e.rawRequest.redact(), nil
	}
	if e.rawResponse != nil {
		e.Response, e.rawResponse = e.rawResponse.redact(), nil
	}
}

// Flow is the events of one flow, in order.
type Flow struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Started time.Time `json:"started"`
	Events  []Event   `json:"events"`
	// Dropped counts the oldest events let go to keep the flow within
	// maxEvents.
	Dropped int `json:"dropped,omitempty"`
}

// maxEvents bounds the events kept per flow.
const maxEvents = 1000

// Recorder keeps the most recent flows in memory. It is safe for
// concurrent use. The zero value is not usable; call NewRecorder.
type Recorder struct {
	mu       sync.Mutex
	max      int
	seq      int64
	order    []string // flow ids, oldest first
	flows    map[string]*Flow
	now      func() time.Time
	watchers map[chan struct{}]struct{}
}

// NewRecorder keeps up to maxFlows flows (oldest dropped first).
func NewRecorder(maxFlows int, now func() time.Time) *Recorder {
	if maxFlows <= 0 {
		maxFlows = 200
	}
	if now == nil {
		now = time.Now
	}
	return &Recorder{max: maxFlows, flows: map[string]*Flow{}, now: now, watchers: map[chan struct{}]struct{}{}}
}

// Add records e in its flow (e.Flow; "" goes to flow "unattributed"),
// assigning Seq and, when zero, At.
func (r *Recorder) Add(e Event) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Flow == "" {
		e.Flow = "unattributed"
	}
	if e.At.IsZero() {
		e.At = r.now()
	}
	r.seq++
	e.Seq = r.seq
	f := r.flows[e.Flow]
	if f == nil {
		f = &Flow{ID: e.Flow, Started: e.At}
		r.flows[e.Flow] = f
		r.order = append(r.order, e.Flow)
		if len(r.order) > r.max {
			delete(r.flows, r.order[0])
			r.order = r.order[1:]
		}
	}
	if len(f.Events) >= maxEvents {
		// A flow nobody names (plain FHIR traffic under load) would grow
		// without end: drop its oldest quarter.
		n := copy(f.Events, f.Events[maxEvents/4:])
		clear(f.Events[n:])
		f.Events = f.Events[:n]
		f.Dropped += maxEvents / 4
	}
	f.Events = append(f.Events, e)
	for w := range r.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Name sets a flow's human name (e.g. the scenario flow it belongs to).
func (r *Recorder) Name(flow, name string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.flows[flow]; f != nil {
		f.Name = name
		return
	}
	r.flows[flow] = &Flow{ID: flow, Name: name, Started: r.now()}
	r.order = append(r.order, flow)
}

// Flows returns copies of the recorded flows, newest first.
func (r *Recorder) Flows() []Flow { return r.Recent(0) }

// Recent returns copies of the newest n flows (n ≤ 0: all), newest first.
func (r *Recorder) Recent(n int) []Flow {
	r.mu.Lock()
	k := len(r.order)
	if n > 0 && n < k {
		k = n
	}
	out := make([]Flow, 0, k)
	for i := len(r.order) - 1; i >= 0 && len(out) < k; i-- {
		f := r.flows[r.order[i]]
		c := *f
		c.Events = slices.Clone(f.Events)
		out = append(out, c)
	}
	r.mu.Unlock()
	r.redact(out)
	return out
}

// Flow returns a copy of one flow.
func (r *Recorder) Flow(id string) (Flow, bool) {
	r.mu.Lock()
	f, ok := r.flows[id]
	if !ok {
		r.mu.Unlock()
		return Flow{}, false
	}
	c := *f
	c.Events = slices.Clone(f.Events)
	r.mu.Unlock()
	out := []Flow{c}
	r.redact(out)
	return out[0], true
}

// redact redacts the copies' events that were never read, outside the
// lock (servers recording exchanges do not wait for it), then keeps the
// result in the recorded events still pending, so that each event is
// redacted once. The captures are never modified, so two readers may
// redact the same event at once; the first to store its result wins.
func (r *Recorder) redact(copies []Flow) {
	redacted := false
	for i := range copies {
		for j := range copies[i].Events {
			if e := &copies[i].Events[j]; e.pending() {
				e.redact()
				redacted = true
			}
		}
	}
	if !redacted {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range copies {
		f := r.flows[copies[i].ID]
		if f == nil {
			continue
		}
		done := copies[i].Events
		j := 0
		for k := range f.Events {
			e := &f.Events[k]
			if !e.pending() {
				continue
			}
			// Both are in Seq order; the recorded flow may have dropped
			// its oldest events or gained new ones since the copy.
			for j < len(done) && done[j].Seq < e.Seq {
				j++
			}
			if j < len(done) && done[j].Seq == e.Seq {
				e.URL, e.Request, e.Response = done[j].URL, done[j].Request, done[j].Response
				e.rawURL, e.rawRequest, e.rawResponse = nil, nil, nil
			}
		}
	}
}

// Watch returns a channel that receives (coalesced) after each Add, and a
// function to stop watching.
func (r *Recorder) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.watchers[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.watchers, ch)
		r.mu.Unlock()
	}
}

type ctxKey struct{}

// WithFlow returns ctx carrying the flow id; outbound calls made with it
// are recorded in that flow.
func WithFlow(ctx context.Context, flow string) context.Context {
	return context.WithValue(ctx, ctxKey{}, flow)
}

// FlowFrom returns the flow id carried by ctx, or "".
func FlowFrom(ctx context.Context) string {
	f, _ := ctx.Value(ctxKey{}).(string)
	return f
}

// FlowHeader carries the flow id across HTTP between sim's own parties (and
// from the scripted app), so both ends record into the same flow.
const FlowHeader = "Sim-Flow"
