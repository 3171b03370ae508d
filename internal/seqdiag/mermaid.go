package seqdiag

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/smart-sim/sim/internal/trace"
)

// Mermaid renders the flow as a Mermaid sequenceDiagram: the same lifelines,
// arrows and notes as SVG. Failed exchanges end in a cross (-x / --x) and
// their notes are marked with ✗.
func Mermaid(f trace.Flow, opts Options) string {
	o := opts.normalize()
	events, dropped := eventsOf(f, o)
	parties := lifelines(f, events, o.AllParties)
	id := make(map[trace.Party]string, len(parties))
	var b strings.Builder
	b.WriteString("sequenceDiagram\n")
	fmt.Fprintf(&b, "    %%%% %s\n", mermaidText(title(f, o)))
	for i, p := range parties {
		id[p] = "P" + strconv.Itoa(i)
		fmt.Fprintf(&b, "    participant %s as %s\n", id[p], mermaidText(clean(string(p), 40)))
	}
	for _, e := range events {
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
		if e.Kind == trace.KindDecision || from == to && e.Kind != trace.KindHTTP {
			mark := ""
			if failed(e) {
				mark = "✗ "
			}
			text := e.Decision
			if e.Label != "" && e.Decision != "" && e.Label != e.Decision {
				text = e.Label + ": " + e.Decision
			} else if text == "" {
				text = e.Label
			}
			fmt.Fprintf(&b, "    Note over %s: %s\n", id[from], mermaidText(mark+clean(text, maxLabel)))
			continue
		}
		req := "->>"
		if e.Error && e.Status == 0 {
			req = "-x"
		}
		fmt.Fprintf(&b, "    %s%s%s: %s\n", id[from], req, id[to], mermaidText(clean(arrowLabel(e), maxLabel)))
		if e.Kind == trace.KindHTTP && e.Status != 0 {
			resp := "-->>"
			if failed(e) {
				resp = "--x"
			}
			fmt.Fprintf(&b, "    %s%s%s: %s\n", id[to], resp, id[from], mermaidText(statusText(e)))
		}
	}
	if dropped > 0 && len(parties) > 0 {
		fmt.Fprintf(&b, "    Note over %s: %d more events not drawn\n", id[parties[0]], dropped)
	}
	return b.String()
}

// mermaidText keeps letters, digits, spaces and harmless punctuation and
// writes everything else as a Mermaid entity code (#59; for ';'), so text
// can neither end a statement nor start a comment or markup.
func mermaidText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ':
			b.WriteRune(r)
		case strings.ContainsRune("/.-_?=,()[]'*+@!:", r):
			b.WriteRune(r)
		case r == '✗' || r == '…':
			b.WriteRune(r)
		default:
			b.WriteString("#" + strconv.Itoa(int(r)) + ";")
		}
	}
	if b.Len() == 0 {
		return "#160;" // a statement needs some text
	}
	return b.String()
}
