package seqdiag

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/smart-sim/sim/internal/trace"
)

// Options tune SVG and Mermaid. The zero value is ready to use.
type Options struct {
	// AllParties draws every lifeline of trace.Parties, even those the
	// flow does not involve (useful to compare flows side by side).
	AllParties bool
	// Title replaces the flow's name (or id) as the diagram's title.
	Title string
	// IDPrefix prefixes the ids inside the SVG (title, desc, markers), so
	// several diagrams can be inlined in one HTML page; default "sd".
	IDPrefix string
	// MaxEvents bounds how many events are drawn; the rest are summarised
	// in a final note. Default 500.
	MaxEvents int
}

// Geometry, in SVG user units.
const (
	colW      = 170 // distance between lifelines
	margin    = 16
	titleH    = 34
	headH     = 30 // party box height
	rowH      = 30 // one arrow
	noteLineH = 14
	charW     = 6.4 // average glyph width of the 11px label font
	maxLabel  = 160 // runes kept of any label before clipping
	maxTitle  = 120
	tooltipN  = 400 // runes kept in <title> tooltips
)

// lifelines returns the parties to draw, in diagram order: the known
// parties in trace.Parties order, then unknown ones by first appearance.
func lifelines(f trace.Flow, events []trace.Event, all bool) []trace.Party {
	used := map[trace.Party]bool{}
	var extra []trace.Party
	for _, e := range events {
		for _, p := range []trace.Party{e.From, e.To} {
			if p == "" || used[p] {
				continue
			}
			used[p] = true
			if !slices.Contains(trace.Parties, p) {
				extra = append(extra, p)
			}
		}
	}
	var out []trace.Party
	for _, p := range trace.Parties {
		if all || used[p] {
			out = append(out, p)
		}
	}
	return append(out, extra...)
}

func (o Options) normalize() Options {
	if o.IDPrefix == "" {
		o.IDPrefix = "sd"
	}
	o.IDPrefix = sanitizeID(o.IDPrefix)
	if o.MaxEvents <= 0 {
		o.MaxEvents = 500
	}
	return o
}

func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 || !unicode.IsLetter(rune(b.String()[0])) {
		return "sd" + b.String()
	}
	return clipRunes(b.String(), 40)
}

// title is the diagram's title as clean text: the option, the flow's
// name, or its id, whichever first has printable text.
func title(f trace.Flow, o Options) string {
	for _, t := range []string{o.Title, f.Name, "flow " + f.ID} {
		if c := clean(t, maxTitle); c != "" && c != "flow" {
			return c
		}
	}
	return "flow"
}

// eventsOf returns the events to draw and how many were left out.
func eventsOf(f trace.Flow, o Options) ([]trace.Event, int) {
	if len(f.Events) > o.MaxEvents {
		return f.Events[:o.MaxEvents], len(f.Events) - o.MaxEvents
	}
	return f.Events, 0
}

// arrowLabel is the text on a request arrow.
func arrowLabel(e trace.Event) string {
	if e.Label != "" {
		return e.Label
	}
	if e.Method != "" || e.URL != "" {
		p := e.URL
		if u, err := url.Parse(e.URL); err == nil && u.Path != "" {
			p = u.Path
		}
		return strings.TrimSpace(e.Method + " " + p)
	}
	return string(e.Kind)
}

// statusText is the text on a response arrow.
func statusText(e trace.Event) string {
	if e.Status == 0 {
		if e.Error {
			return "no response"
		}
		return ""
	}
	if t := http.StatusText(e.Status); t != "" {
		return strconv.Itoa(e.Status) + " " + t
	}
	return strconv.Itoa(e.Status)
}

// failed reports whether the event is drawn in red.
func failed(e trace.Event) bool { return e.Error || e.Status >= 400 }

// noteText is the text of a decision note, as lines.
func noteLines(e trace.Event, width int) []string {
	parts := noteParts(e)
	chars := max(int(float64(width-12)/charW), 12)
	var lines []string
	for _, p := range parts {
		lines = append(lines, wrap(clean(p, maxLabel), chars)...)
	}
	const maxLines = 5
	if len(lines) > maxLines {
		lines = lines[:maxLines]
		lines[maxLines-1] = clipRunes(lines[maxLines-1]+" …", chars)
	}
	return lines
}

// noteParts are the label and the decision of a note, without repeats.
func noteParts(e trace.Event) []string {
	var parts []string
	if e.Label != "" {
		parts = append(parts, e.Label)
	}
	if e.Decision != "" && e.Decision != e.Label {
		parts = append(parts, e.Decision)
	}
	if len(parts) == 0 {
		parts = []string{string(e.Kind)}
	}
	return parts
}

// clean makes s one line of printable text of at most n runes.
func clean(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	var b strings.Builder
	count := 0
	lastSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			if !lastSpace && count > 0 {
				b.WriteByte(' ')
				count++
				lastSpace = true
			}
		} else {
			b.WriteRune(r)
			count++
			lastSpace = false
		}
		if count > n+1 {
			break
		}
	}
	return clipRunes(strings.TrimSpace(b.String()), n)
}

func clipRunes(s string, n int) string {
	if n < 2 {
		n = 2
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// wrap breaks s into lines of at most n runes, at spaces where it can.
func wrap(s string, n int) []string {
	var lines []string
	r := []rune(s)
	for len(r) > n {
		cut := n
		for i := n; i > n/2; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
		lines = append(lines, strings.TrimSpace(string(r[:cut])))
		r = r[cut:]
		for len(r) > 0 && r[0] == ' ' {
			r = r[1:]
		}
	}
	if len(r) > 0 || len(lines) == 0 {
		lines = append(lines, string(r))
	}
	return lines
}

// svgWriter accumulates the document; text always goes through esc.
type svgWriter struct{ b bytes.Buffer }

func (w *svgWriter) f(format string, args ...any) { fmt.Fprintf(&w.b, format, args...) }

// esc returns s escaped for XML text and attribute values. Characters XML
// cannot carry become U+FFFD.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // writes to a bytes.Buffer cannot fail
	return b.String()
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// SVG renders the flow as a standalone SVG document (UTF-8, with an
// embedded stylesheet, a viewBox, and <title>/<desc> for screen readers).
func SVG(f trace.Flow, opts Options) []byte {
	o := opts.normalize()
	events, dropped := eventsOf(f, o)
	parties := lifelines(f, events, o.AllParties)
	if len(parties) == 0 {
		parties = []trace.Party{trace.App}
	}
	col := make(map[trace.Party]int, len(parties))
	for i, p := range parties {
		col[p] = i
	}
	x := func(p trace.Party) float64 { return float64(margin + col[p]*colW + colW/2) }
	width := margin*2 + len(parties)*colW

	// Lay out first, so the height is known for the viewBox.
	var body svgWriter
	y := float64(titleH + headH + 22)
	nHTTP, nErr := 0, 0
	for _, e := range events {
		if failed(e) {
			nErr++
		}
		from, to := e.From, e.To
		if from == "" {
			from = to
		}
		if to == "" {
			to = from
		}
		if from == "" {
			continue
		}
		x1, x2 := x(from), x(to)
		errCls := ""
		if failed(e) {
			errCls = " err"
		}
		switch {
		case e.Kind == trace.KindDecision || from == to && e.Kind != trace.KindHTTP:
			noteW := colW*2 - 20
			lines := noteLines(e, noteW)
			h := float64(len(lines)*noteLineH + 10)
			left := min(max(x1-float64(noteW)/2, margin/2), float64(width-margin/2-noteW))
			body.f(`<g class="note%s"><title>%s</title>`, errCls, esc(clean(strings.Join(noteParts(e), ": "), tooltipN)))
			body.f(`<rect x="%s" y="%s" width="%d" height="%s" rx="3"/>`, num(left), num(y-10), noteW, num(h))
			for i, l := range lines {
				body.f(`<text x="%s" y="%s">%s</text>`, num(left+6), num(y+4+float64(i*noteLineH)), esc(l))
			}
			body.f("</g>\n")
			y += h + 14
		case from == to: // an HTTP call a party makes to itself
			nHTTP++
			label := clean(arrowLabel(e), 20)
			body.f(`<g class="msg%s"><title>%s</title>`, errCls, esc(clean(e.Method+" "+e.URL+" "+statusText(e), tooltipN)))
			body.f(`<path class="line" d="M%s %s h30 v16 h-28" marker-end="url(#%s-arrow%s)"/>`,
				num(x1), num(y), o.IDPrefix, markerSuffix(errCls))
			body.f(`<text class="lbl" x="%s" y="%s" text-anchor="start">%s</text>`, num(x1+36), num(y+4), esc(label))
			if st := statusText(e); st != "" {
				body.f(`<text class="st" x="%s" y="%s" text-anchor="start">%s</text>`, num(x1+36), num(y+17), esc(st))
			}
			body.f("</g>\n")
			y += rowH + 12
		default:
			cls := "msg"
			if e.Kind == trace.KindUser {
				cls = "msg user"
			}
			span := x2 - x1
			if span < 0 {
				span = -span
			}
			mid := (x1 + x2) / 2
			chars := max(int((span-12)/charW), 16)
			label := clean(arrowLabel(e), min(chars, maxLabel))
			reqErr := ""
			if e.Error && e.Status == 0 {
				reqErr = " err"
			}
			body.f(`<g class="%s%s"><title>%s</title>`, cls, errCls,
				esc(clean(strings.TrimSpace(arrowLabel(e)+" "+e.URL+" "+statusText(e)), tooltipN)))
			body.f(`<line class="line%s" x1="%s" y1="%s" x2="%s" y2="%s" marker-end="url(#%s-arrow%s)"/>`,
				reqErr, num(x1), num(y), num(x2), num(y), o.IDPrefix, markerSuffix(reqErr))
			body.f(`<text class="lbl%s" x="%s" y="%s">%s</text>`, reqErr, num(mid), num(y-5), esc(label))
			y += rowH
			if e.Kind == trace.KindHTTP {
				nHTTP++
				if st := statusText(e); st != "" {
					body.f(`<line class="line resp%s" x1="%s" y1="%s" x2="%s" y2="%s" marker-end="url(#%s-arrow%s)"/>`,
						errCls, num(x2), num(y-8), num(x1), num(y-8), o.IDPrefix, markerSuffix(errCls))
					body.f(`<text class="st%s" x="%s" y="%s">%s</text>`, errCls, num(mid), num(y-12), esc(clean(st, chars)))
					y += rowH - 8
				}
			}
			body.f("</g>\n")
		}
	}
	if dropped > 0 {
		body.f(`<text class="more" x="%d" y="%s">… %d more events not drawn</text>`+"\n", margin, num(y), dropped)
		y += rowH
	}
	height := y + 10

	t := title(f, o)
	names := make([]string, len(parties))
	for i, p := range parties {
		names[i] = clean(string(p), 40)
	}
	desc := fmt.Sprintf("Sequence diagram of %d events (%d HTTP exchanges, %d errors or refusals) between %s.",
		len(f.Events), nHTTP, nErr, strings.Join(names, ", "))

	var w svgWriter
	w.f(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %s" width="%d" height="%s" role="img" aria-labelledby="%s-title %s-desc">`+"\n",
		width, num(height), width, num(height), o.IDPrefix, o.IDPrefix)
	w.f(`<title id="%s-title">%s</title>`+"\n", o.IDPrefix, esc(t))
	w.f(`<desc id="%s-desc">%s</desc>`+"\n", o.IDPrefix, esc(desc))
	w.f("<style>\n%s</style>\n", style)
	w.f(`<defs>`)
	for _, m := range []struct{ id, cls string }{{"arrow", "head"}, {"arrow-err", "head err"}} {
		w.f(`<marker id="%s-%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path class="%s" d="M0 0 L10 5 L0 10 z"/></marker>`,
			o.IDPrefix, m.id, m.cls)
	}
	w.f("</defs>\n")
	w.f(`<rect class="bg" x="0" y="0" width="%d" height="%s"/>`+"\n", width, num(height))
	w.f(`<text class="title" x="%d" y="22">%s</text>`+"\n", margin, esc(t))
	for _, p := range parties {
		cx := x(p)
		w.f(`<g class="party"><line class="life" x1="%s" y1="%d" x2="%s" y2="%s"/>`, num(cx), titleH+headH, num(cx), num(height-6))
		w.f(`<rect x="%s" y="%d" width="%d" height="%d" rx="4"/>`, num(cx-float64(colW-24)/2), titleH, colW-24, headH)
		w.f(`<text x="%s" y="%d">%s</text></g>`+"\n", num(cx), titleH+headH/2+4, esc(clean(string(p), 22)))
	}
	w.b.Write(body.b.Bytes())
	w.f("</svg>\n")
	return w.b.Bytes()
}

func markerSuffix(errCls string) string {
	if errCls != "" {
		return "-err"
	}
	return ""
}

const style = `svg { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 11px; }
.bg { fill: #ffffff; }
.title { font-size: 14px; font-weight: 600; fill: #1f2933; }
.party rect { fill: #eef3f8; stroke: #4a6785; stroke-width: 1; }
.party text { text-anchor: middle; font-weight: 600; fill: #1f2933; }
.life { stroke: #9aa5b1; stroke-dasharray: 4 4; }
.line { stroke: #323f4b; stroke-width: 1.2; fill: none; }
.resp { stroke-dasharray: 5 3; }
.head { fill: #323f4b; }
.lbl, .st { text-anchor: middle; fill: #1f2933; }
.st { fill: #52606d; }
.user .line { stroke: #2563eb; }
.user .lbl { fill: #1d4ed8; }
.note rect { fill: #fff8c4; stroke: #b59f00; }
.note text { fill: #3e2f00; }
.err, .line.err, .err .line.resp { stroke: #c62828; }
.head.err { fill: #c62828; stroke: none; }
text.err, .err text.st { fill: #c62828; font-weight: 600; }
.note.err rect { fill: #fde8e8; stroke: #c62828; }
.note.err text { fill: #8e1b1b; }
.more { fill: #52606d; font-style: italic; }
`
