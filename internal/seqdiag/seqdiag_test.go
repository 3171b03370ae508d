package seqdiag

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/trace"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var t0 = time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)

// launchFlow is direction A up to the reads, with a refused patient scope
// at Other (the patient is absent there).
func launchFlow() trace.Flow {
	ev := []trace.Event{
		{Kind: trace.KindHTTP, From: trace.App, To: trace.EHRFHIR, Method: "GET", URL: "http://127.0.0.1:8000/fhir/.well-known/smart-configuration", Status: 200},
		{Kind: trace.KindHTTP, From: trace.App, To: trace.Brands, Method: "GET", URL: "http://127.0.0.1:8000/brands/bundle.json", Status: 200},
		{Kind: trace.KindHTTP, From: trace.User, To: trace.EHRAS, Method: "GET", URL: "http://127.0.0.1:8000/auth/authorize?client_id=app&scope=REDACTED", Label: "GET /auth/authorize", Status: 200},
		{Kind: trace.KindUser, From: trace.User, To: trace.EHRAS, Label: "log in as dr.smith, approve"},
		{Kind: trace.KindHTTP, From: trace.App, To: trace.EHRAS, Method: "POST", URL: "http://127.0.0.1:8000/auth/token", Label: "POST /auth/token (code)", Status: 200},
		{Kind: trace.KindHTTP, From: trace.User, To: trace.OtherAS, Method: "GET", URL: "http://127.0.0.1:8001/auth/authorize", Label: "GET /auth/authorize launch=<launch-token>", Status: 200},
		{Kind: trace.KindHTTP, From: trace.OtherAS, To: trace.EHRAS, Method: "POST", URL: "http://127.0.0.1:8000/auth/token", Label: "POST /auth/token (client_credentials)", Status: 200},
		{Kind: trace.KindHTTP, From: trace.OtherAS, To: trace.EHRAS, Method: "POST", URL: "http://127.0.0.1:8000/auth/introspect", Status: 200},
		{Kind: trace.KindHTTP, From: trace.OtherAS, To: trace.EHRFHIR, Method: "GET", URL: "http://127.0.0.1:8000/fhir/Patient/e-17", Status: 200},
		{Kind: trace.KindDecision, From: trace.OtherAS, To: trace.OtherAS, Label: "match patient", Decision: "refused patient/*.rs: no record with the national id in Other's directory", Error: true},
		{Kind: trace.KindUser, From: trace.User, To: trace.OtherAS, Label: "approve"},
		{Kind: trace.KindHTTP, From: trace.App, To: trace.OtherAS, Method: "POST", URL: "http://127.0.0.1:8001/auth/token", Status: 200},
		{Kind: trace.KindHTTP, From: trace.App, To: trace.OtherFHIR, Method: "GET", URL: "http://127.0.0.1:8001/fhir/Patient/o-3", Status: 403, Error: true},
	}
	for i := range ev {
		ev[i].Seq = int64(i + 1)
		ev[i].Flow = "f1"
		ev[i].At = t0.Add(time.Duration(i) * 10 * time.Millisecond)
	}
	return trace.Flow{ID: "f1", Name: "absent patient: patient scopes refused", Started: t0, Events: ev}
}

// downFlow has an exchange that never got an answer and a self call.
func downFlow() trace.Flow {
	return trace.Flow{ID: "f2", Name: "EHR AS down during the second launch", Events: []trace.Event{
		{Kind: trace.KindHTTP, From: trace.OtherAS, To: trace.EHRAS, Method: "POST", URL: "http://127.0.0.1:8000/auth/introspect", Error: true},
		{Kind: trace.KindHTTP, From: trace.OtherAS, To: trace.OtherAS, Method: "GET", URL: "http://127.0.0.1:8001/auth/consent", Status: 500},
		{Kind: trace.KindDecision, From: trace.OtherAS, Decision: "answer temporarily_unavailable to the app"},
	}}
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		flow trace.Flow
		opts Options
	}{
		{"launch_refused", launchFlow(), Options{}},
		{"ehr_down", downFlow(), Options{}},
		{"ehr_down_all_parties", downFlow(), Options{AllParties: true, Title: "All lifelines", IDPrefix: "d2"}},
		{"empty", trace.Flow{ID: "none"}, Options{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svg := SVG(tc.flow, tc.opts)
			checkSVG(t, svg)
			golden(t, tc.name+".svg", svg)
			golden(t, tc.name+".mmd", []byte(Mermaid(tc.flow, tc.opts)))
			if again := SVG(tc.flow, tc.opts); !bytes.Equal(again, svg) {
				t.Error("SVG is not deterministic")
			}
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s", name, got)
	}
}

// svgDoc is what checkSVG learns from parsing a document.
type svgDoc struct {
	title    string
	texts    []string
	elements map[string]int
}

// checkSVG parses the document with encoding/xml and checks the frame every
// diagram must have.
func checkSVG(t *testing.T, svg []byte) svgDoc {
	t.Helper()
	doc := svgDoc{elements: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	dec.Strict = true
	var stack []string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				if tok.Name.Local != "svg" || tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Fatalf("root element %v, want svg in the SVG namespace", tok.Name)
				}
				attrs := map[string]string{}
				for _, a := range tok.Attr {
					attrs[a.Name.Local] = a.Value
				}
				if !strings.HasPrefix(attrs["viewBox"], "0 0 ") || attrs["role"] != "img" || attrs["aria-labelledby"] == "" {
					t.Errorf("root attributes %v", attrs)
				}
			}
			stack = append(stack, tok.Name.Local)
			doc.elements[tok.Name.Local]++
			text.Reset()
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			switch tok.Name.Local {
			case "title":
				if len(stack) == 2 {
					doc.title = text.String()
				}
			case "text":
				doc.texts = append(doc.texts, text.String())
			}
			stack = stack[:len(stack)-1]
			text.Reset()
		}
	}
	for _, el := range []string{"title", "desc", "style"} {
		if doc.elements[el] == 0 {
			t.Errorf("no <%s> element", el)
		}
	}
	if doc.title == "" {
		t.Error("empty document title")
	}
	return doc
}

func TestLifelinesOnlyUsedInOrder(t *testing.T) {
	doc := checkSVG(t, SVG(launchFlow(), Options{}))
	var parties []string
	for _, s := range doc.texts {
		for _, p := range trace.Parties {
			if s == string(p) {
				parties = append(parties, s)
			}
		}
	}
	want := []string{"User", "App", "Brands", "EHR FHIR", "EHR AS", "Other FHIR", "OtherAS"}
	if strings.Join(parties[:len(want)], ",") != strings.Join(want, ",") {
		t.Errorf("lifelines %v, want %v", parties, want)
	}
	doc = checkSVG(t, SVG(downFlow(), Options{}))
	var got []string
	for _, s := range doc.texts {
		if s == "EHR AS" || s == "OtherAS" || s == "App" || s == "User" {
			got = append(got, s)
		}
	}
	if strings.Join(got, ",") != "EHR AS,OtherAS" {
		t.Errorf("lifelines of a flow between two servers: %v", got)
	}
}

func TestErrorsAreRed(t *testing.T) {
	svg := string(SVG(downFlow(), Options{}))
	if !strings.Contains(svg, `class="msg err"`) || !strings.Contains(svg, `class="note"`) {
		t.Errorf("expected a failed message group and a plain note:\n%s", svg)
	}
	if !strings.Contains(svg, "no response") {
		t.Error("an exchange without a response is not marked")
	}
	m := Mermaid(downFlow(), Options{})
	if !strings.Contains(m, "P1-xP0: POST /auth/introspect") {
		t.Errorf("unanswered request is not drawn with a cross:\n%s", m)
	}
	m = Mermaid(launchFlow(), Options{})
	if !strings.Contains(m, "--xP1: 403 Forbidden") || !strings.Contains(m, "Note over P6: ✗ match patient: refused") {
		t.Errorf("refusals are not marked:\n%s", m)
	}
}

var hostile = []string{
	`</text><script>alert(1)</script>`,
	`"><svg onload="x">`,
	"a & b < c > d ' \" ]]> <![CDATA[ x",
	"nul\x00 bell\x07 esc\x1b",
	"bad utf-8 \xff\xfe",
	"line one\nline two\r\n%% comment\n    participant X as Y",
	"Note over P0: x; end; #35; %%{init: {}}%%",
	strings.Repeat("long ", 500),
	"\u202e right-to-left override \u2028 line separator",
}

func TestHostileLabels(t *testing.T) {
	for _, s := range hostile {
		f := trace.Flow{ID: s, Name: s, Events: []trace.Event{
			{Kind: trace.KindHTTP, From: trace.App, To: trace.Party(s), Method: s, URL: s, Label: s, Status: 999},
			{Kind: trace.KindDecision, From: trace.Party(s), Label: s, Decision: s, Error: true},
			{Kind: trace.KindUser, From: trace.User, To: trace.EHRAS, Label: s},
			{Kind: trace.Kind(s), From: trace.Party(s), To: trace.Party(s), Label: s},
		}}
		doc := checkSVG(t, SVG(f, Options{Title: s, IDPrefix: s}))
		if doc.elements["script"] != 0 || doc.elements["svg"] != 1 {
			t.Errorf("label %q changed the document structure: %v", s, doc.elements)
		}
		checkMermaid(t, Mermaid(f, Options{Title: s}), mermaidLines(f))
	}
}

// checkMermaid checks each line is one statement we write, so nothing in a
// label started a new statement, comment or directive.
func checkMermaid(t *testing.T, m string, wantLines int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(m, "\n"), "\n")
	if lines[0] != "sequenceDiagram" {
		t.Errorf("first line %q", lines[0])
	}
	if len(lines) != wantLines {
		t.Errorf("%d lines, want %d:\n%s", len(lines), wantLines, m)
	}
	for i, l := range lines[1:] {
		body, ok := strings.CutPrefix(l, "    ")
		if !ok {
			t.Errorf("line %d not indented: %q", i+2, l)
			continue
		}
		if i > 0 && strings.Contains(body, "%%") {
			t.Errorf("line %d carries a comment: %q", i+2, l)
		}
		text := body
		if rest, ok := strings.CutPrefix(body, "participant "); ok {
			_, text, _ = strings.Cut(rest, " as ")
		} else if i > 0 {
			_, text, _ = strings.Cut(body, ": ")
		}
		if strings.ContainsAny(text, ";#<>\"{}") && !entityOnly(text) {
			t.Errorf("line %d carries unescaped punctuation: %q", i+2, l)
		}
	}
}

// entityOnly reports whether every '#' and ';' in s belongs to an entity
// code such as #59;.
func entityOnly(s string) bool {
	for len(s) > 0 {
		i := strings.IndexAny(s, ";#<>\"{}")
		if i < 0 {
			return true
		}
		if s[i] != '#' {
			return false
		}
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i+1 || j >= len(s) || s[j] != ';' {
			return false
		}
		s = s[j+1:]
	}
	return true
}

func TestMaxEvents(t *testing.T) {
	f := launchFlow()
	svg := SVG(f, Options{MaxEvents: 3})
	doc := checkSVG(t, svg)
	found := false
	for _, s := range doc.texts {
		found = found || s == "… 10 more events not drawn"
	}
	if !found {
		t.Errorf("no summary of the events left out: %q", doc.texts)
	}
}

func FuzzSVG(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, s, 200, true)
	}
	f.Add("GET /fhir/Patient", "refused", 403, false)
	f.Fuzz(func(t *testing.T, label, decision string, status int, isErr bool) {
		fl := trace.Flow{ID: label, Name: decision, Events: []trace.Event{
			{Kind: trace.KindHTTP, From: trace.App, To: trace.Party(decision), Label: label, URL: label, Status: status, Error: isErr},
			{Kind: trace.KindDecision, From: trace.Party(label), Label: label, Decision: decision, Error: isErr},
			{Kind: trace.KindUser, From: trace.Party(label), To: trace.Party(label), Label: decision},
		}}
		doc := checkSVG(t, SVG(fl, Options{IDPrefix: label}))
		if doc.elements["svg"] != 1 {
			t.Fatalf("nested svg from %q", label)
		}
		checkMermaid(t, Mermaid(fl, Options{}), mermaidLines(fl))
	})
}

// mermaidLines is how many lines Mermaid must write for f: the header,
// the comment, one per participant, one per drawn event and one per
// response.
func mermaidLines(f trace.Flow) int {
	n := 2 + len(lifelines(f, f.Events, false))
	for _, e := range f.Events {
		if e.From == "" && e.To == "" {
			continue
		}
		n++
		if e.Kind == trace.KindHTTP && e.Status != 0 {
			n++
		}
	}
	return n
}

func BenchmarkSVG(b *testing.B) {
	f := launchFlow()
	for b.Loop() {
		_ = SVG(f, Options{})
	}
}
