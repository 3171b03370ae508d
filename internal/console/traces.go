package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/seqdiag"
	"github.com/smart-sim/sim/internal/trace"
)

// flowSummary is one row of the trace list.
type flowSummary struct {
	ID, Name   string
	Started    string
	Events     int
	Errors     int
	Parties    []string
	Highlights []string
}

type tracesPage struct {
	base
	Flows []flowSummary
}

const maxListedFlows = 100

func (c *Console) flowSummaries() []flowSummary {
	if c.cfg.Trace == nil {
		return nil
	}
	flows := c.cfg.Trace.Recent(maxListedFlows)
	out := make([]flowSummary, 0, len(flows))
	for _, f := range flows {
		s := flowSummary{ID: f.ID, Name: f.Name, Started: f.Started.Format("15:04:05"), Events: len(f.Events)}
		seen := map[trace.Party]bool{}
		for _, e := range f.Events {
			if e.Error || e.Status >= 400 {
				s.Errors++
			}
			for _, p := range []trace.Party{e.From, e.To} {
				if p != "" {
					seen[p] = true
				}
			}
			if h := highlight(e); h != "" && !slices.Contains(s.Highlights, h) && len(s.Highlights) < 4 {
				s.Highlights = append(s.Highlights, h)
			}
		}
		for _, p := range trace.Parties {
			if seen[p] {
				s.Parties = append(s.Parties, string(p))
			}
		}
		out = append(out, s)
	}
	return out
}

// highlight names the events worth seeing in the list.
func highlight(e trace.Event) string {
	switch {
	case e.Kind == trace.KindDecision:
		return e.Decision
	case e.From == trace.OtherAS && e.To == trace.EHRAS && strings.Contains(e.Label, "introspect"):
		return "OtherAS → EHR AS introspection"
	}
	return ""
}

func (c *Console) traces(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "traces.html", tracesPage{base: c.base("Traces", "traces", c.session(r)), Flows: c.flowSummaries()})
}

// traceEvents streams the trace list as server-sent events: each message
// is the list's HTML, sent at once and again whenever the trace changes
// (at most every 300 ms).
func (c *Console) traceEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok || c.cfg.Trace == nil {
		http.Error(w, "Streaming is not available.", http.StatusNotImplemented)
		return
	}
	// Server-sent events outlive the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	changed, stop := c.cfg.Trace.Watch()
	defer stop()
	tmpl := c.pages["traces.html"]
	send := func() bool {
		var buf bytes.Buffer
		if err := tmpl.ExecuteTemplate(&buf, "flowlist", c.flowSummaries()); err != nil {
			c.cfg.Logger.ErrorContext(r.Context(), "render trace list", "err", err)
			return false
		}
		var out bytes.Buffer
		out.WriteString("event: flows\n")
		for _, line := range strings.Split(buf.String(), "\n") {
			out.WriteString("data: " + line + "\n")
		}
		out.WriteString("\n")
		if _, err := w.Write(out.Bytes()); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !send() {
		return
	}
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-changed:
			// Coalesce bursts: a flow is dozens of events.
			t := time.NewTimer(300 * time.Millisecond)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
			select {
			case <-changed:
			default:
			}
			if !send() {
				return
			}
		case <-keepalive.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// exchange is one event of a flow, ready to show.
type exchange struct {
	trace.Event
	When              string
	Request, Response *message
	DurationMS        string
}

type message struct {
	Headers []string
	Body    string
	Claims  []claimSet
}

type claimSet struct {
	Field  string
	Claims string // pretty JSON
}

type flowPage struct {
	base
	Flow      trace.Flow
	Diagram   template.HTML
	Exchanges []exchange
	Mermaid   string
}

func (c *Console) flow(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Trace == nil {
		c.notFound(w, r)
		return
	}
	f, ok := c.cfg.Trace.Flow(r.PathValue("id"))
	if !ok {
		c.fail(w, r, http.StatusNotFound, "No such flow", "The flow is unknown or has been dropped from the recent flows.")
		return
	}
	page := flowPage{base: c.base("Flow "+f.ID, "traces", c.session(r)), Flow: f}
	if f.Name != "" {
		page.Title = f.Name
	}
	svg := seqdiag.SVG(f, seqdiag.Options{IDPrefix: "flow"})
	// seqdiag escapes every text it draws; the document is inlined as is.
	page.Diagram = template.HTML(svg)
	page.Mermaid = seqdiag.Mermaid(f, seqdiag.Options{})
	for _, e := range f.Events {
		x := exchange{Event: e, When: e.At.Format("15:04:05.000"), Request: toMessage(e.Request), Response: toMessage(e.Response)}
		if e.Duration > 0 {
			x.DurationMS = fmt.Sprintf("%.1f ms", float64(e.Duration)/float64(time.Millisecond))
		}
		page.Exchanges = append(page.Exchanges, x)
	}
	c.render(w, r, http.StatusOK, "flow.html", page)
}

// toMessage renders a recorded (already redacted) message: headers sorted,
// JSON bodies indented, JWT claims decoded per field.
func toMessage(m *trace.Message) *message {
	if m == nil {
		return nil
	}
	out := &message{Body: m.Body}
	for k, v := range m.Headers {
		out.Headers = append(out.Headers, k+": "+v)
	}
	slices.Sort(out.Headers)
	var pretty bytes.Buffer
	if json.Indent(&pretty, []byte(m.Body), "", "  ") == nil {
		out.Body = pretty.String()
	} else if strings.Contains(m.Body, "=") && !strings.ContainsAny(m.Body, " \n{") {
		out.Body = strings.ReplaceAll(m.Body, "&", "\n&")
	}
	keys := make([]string, 0, len(m.Claims))
	for k := range m.Claims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b, _ := json.MarshalIndent(m.Claims[k], "", "  ")
		out.Claims = append(out.Claims, claimSet{Field: k, Claims: string(b)})
	}
	return out
}
