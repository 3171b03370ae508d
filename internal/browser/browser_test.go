package browser

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/smart-sim/sim/ui"
)

// pageURL is the URL the table's pages are read from.
const pageURL = "http://as.test/auth/login?req=r1"

// form is a Form with its action as text, for comparisons.
type form struct {
	Action, Method  string
	Fields, Buttons []Field
}

func simple(forms []Form) []form {
	out := []form{}
	for _, f := range forms {
		out = append(out, form{Action: f.Action.String(), Method: f.Method, Fields: f.Fields, Buttons: f.Buttons})
	}
	return out
}

func text(name, value string) Field { return Field{Name: name, Value: value, Type: "text"} }
func submit(name, value string) Field {
	return Field{Name: name, Value: value, Type: "submit"}
}

var formCases = []struct {
	name  string
	html  string
	title string
	want  []form
}{
	{
		name: "login", title: "Sign in · EHR",
		html: `<!doctype html><html><head><title>
 Sign in · EHR </title></head><body><form method="post" action="/auth/login?req=r1">
<input type="hidden" name="csrf" value="c&amp;1"><input id=username name=username type=text value="doc" required autofocus>
<input name="password" type="password"><div class="actions"><button type="submit" class="primary">Sign in</button></div></form></body></html>`,
		want: []form{{Action: "http://as.test/auth/login?req=r1", Method: "POST",
			Fields:  []Field{{Name: "csrf", Value: "c&1", Type: "hidden"}, text("username", "doc"), {Name: "password", Type: "password"}},
			Buttons: []Field{submit("", "")}}},
	},
	{
		name: "input defaults and case",
		html: `<FORM METHOD=Post><INPUT NAME=a><input name=b TYPE=HIDDEN value=v><input name=c type="" value=x><input name=d name=e value=1 value=2></FORM>`,
		want: []form{{Action: pageURL, Method: "POST",
			Fields: []Field{text("a", ""), {Name: "b", Value: "v", Type: "hidden"}, text("c", "x"), text("d", "1")}}},
	},
	{
		name: "methods",
		html: `<form action=/g><input name=q></form><form method=put action=/p></form><form method=dialog></form><form method=POST></form>`,
		want: []form{
			{Action: "http://as.test/g", Method: "GET", Fields: []Field{text("q", "")}},
			{Action: "http://as.test/p", Method: "GET"},
			{Action: pageURL, Method: "GET"},
			{Action: pageURL, Method: "POST"},
		},
	},
	{
		name: "relative actions",
		html: `<form action="consent?req=2"></form><form action="../fhir/x"></form><form action="?q=a&amp;b=c"></form>
<form action="//other.test/auth/token"></form><form action="https://abs.test/x#frag"></form><form action="http://[::1"></form><form action=""></form>`,
		want: []form{
			{Action: "http://as.test/auth/consent?req=2", Method: "GET"},
			{Action: "http://as.test/fhir/x", Method: "GET"},
			{Action: "http://as.test/auth/login?q=a&b=c", Method: "GET"},
			{Action: "http://other.test/auth/token", Method: "GET"},
			{Action: "https://abs.test/x#frag", Method: "GET"},
			{Action: pageURL, Method: "GET"}, // not a URL: the page's own
			{Action: pageURL, Method: "GET"},
		},
	},
	{
		name: "select with values",
		html: `<form><select name=a><option value=1>One<option value=2 selected>Two<option value=3>Three</select>
<select name=b><option value=x selected>X</option><option value=y selected>Y</option></select>
<select name=c></select><select name=d disabled><option value=z>Z</option></select>
<select name=e><option>Text</option><option>Other</option></select></form>`,
		want: []form{{Action: pageURL, Method: "GET", Fields: []Field{
			{Name: "a", Value: "2", Type: "select"}, {Name: "b", Value: "y", Type: "select"},
			{Name: "c", Type: "select"}, {Name: "d", Value: "z", Type: "select", Disabled: true},
			{Name: "e", Value: "Text", Type: "select"},
		}}},
	},
	{
		name: "select as a browser reads it",
		html: `<form><select name=encounter><option value="">None</option><option value="e1">Visit</option></select>
<select name=t><option>
   Two  words &amp; more
</option></select>
<select name=g><optgroup label=G><option value=g1>G1</option><option value=g2 selected>G2</option></optgroup></select>
<select name=dis><option value=off disabled>Off</option><optgroup disabled><option value=off2></optgroup><option value=on>On</option></select>
<select name=alloff><option value=o1 disabled><option value=o2 disabled></select>
<select name=sel0><option value=a>A</option><option value="" selected>none</option></select>
<select name=rich><option><b>Bold</b> text</option></select></form>`,
		want: []form{{Action: pageURL, Method: "GET", Fields: []Field{
			{Name: "encounter", Value: "", Type: "select"},
			{Name: "t", Value: "Two words & more", Type: "select"},
			{Name: "g", Value: "g2", Type: "select"},
			{Name: "dis", Value: "on", Type: "select"},
			{Name: "alloff", Value: "o1", Type: "select"},
			{Name: "sel0", Value: "", Type: "select"},
			{Name: "rich", Value: "Bold text", Type: "select"},
		}}},
	},
	{
		name: "an input ends a select",
		html: `<form><select name=s><option value=1>One<input name=after value=a><option value=2 selected>Two</select></form>`,
		want: []form{{Action: pageURL, Method: "GET", Fields: []Field{
			{Name: "s", Value: "1", Type: "select"}, text("after", "a"),
		}}},
	},
	{
		name: "textarea",
		html: `<form><textarea name=t rows=3>
line one
line two</textarea><textarea name=u>a &lt;b&gt; <form> c</textarea><textarea name=e></textarea>
<textarea name=n>

x</textarea><textarea name=d disabled>z</textarea></form>`,
		want: []form{{Action: pageURL, Method: "GET", Fields: []Field{
			{Name: "t", Value: "line one\nline two", Type: "textarea"},
			{Name: "u", Value: "a <b> <form> c", Type: "textarea"},
			{Name: "e", Type: "textarea"},
			{Name: "n", Value: "\nx", Type: "textarea"},
			{Name: "d", Value: "z", Type: "textarea", Disabled: true},
		}}},
	},
	{
		name: "checkbox and radio",
		html: `<form><input type=checkbox name=c1><input type=checkbox name=c2 value=v checked><input type=CHECKBOX name=c3 value="" disabled>
<input type=radio name=r><input type=radio name=r value=b checked></form>`,
		want: []form{{Action: pageURL, Method: "GET", Fields: []Field{
			{Name: "c1", Value: "on", Type: "checkbox"},
			{Name: "c2", Value: "v", Type: "checkbox", Checked: true},
			{Name: "c3", Value: "on", Type: "checkbox", Disabled: true},
			{Name: "r", Value: "on", Type: "radio"},
			{Name: "r", Value: "b", Type: "radio", Checked: true},
		}}},
	},
	{
		name: "buttons",
		html: `<form><button name=decision value=approve>Allow</button><button type=submit name=decision value=deny>Deny</button>
<button type=button name=plain value=p>Plain</button><button type=reset>Reset</button><button type=SUBMIT name=x disabled>X</button>
<input type=submit name=go value=Go><input type=image name=img><input type=button name=ib value=b></form>`,
		want: []form{{Action: pageURL, Method: "GET",
			Fields: []Field{{Name: "img", Type: "image"}, {Name: "ib", Value: "b", Type: "button"}},
			Buttons: []Field{submit("decision", "approve"), submit("decision", "deny"),
				{Name: "x", Type: "submit", Disabled: true}, submit("go", "Go")},
		}},
	},
	{
		name: "nested fieldsets",
		html: `<form method=post><fieldset><legend>Outer</legend><input name=a>
<fieldset disabled><legend>Inner</legend><label><input type=checkbox name=scope value=s1 checked> s1</label>
<div><input name=b></div></fieldset><input name=c></fieldset></form>`,
		want: []form{{Action: pageURL, Method: "POST", Fields: []Field{
			text("a", ""), {Name: "scope", Value: "s1", Type: "checkbox", Checked: true}, text("b", ""), text("c", ""),
		}}},
	},
	{
		name: "two forms and controls outside",
		html: `<input name=before><form method=get action=/pick><input name=q type=search><button type=submit>Search</button></form>
<p><input name=between></p><form method=post action=/pick><input type=radio name=patient value=p1 checked><button name=step value=patient>Go</button></form><textarea name=after>x</textarea><select name=s2><option>o</select>`,
		want: []form{
			{Action: "http://as.test/pick", Method: "GET", Fields: []Field{{Name: "q", Type: "search"}}, Buttons: []Field{submit("", "")}},
			{Action: "http://as.test/pick", Method: "POST", Fields: []Field{{Name: "patient", Value: "p1", Type: "radio", Checked: true}},
				Buttons: []Field{submit("step", "patient")}},
		},
	},
	{
		name: "a form in a form is ignored",
		html: `<form action=/a><input name=x><form action=/b method=post><input name=y></form><input name=z></form>`,
		want: []form{{Action: "http://as.test/a", Method: "GET", Fields: []Field{text("x", ""), text("y", "")}}},
	},
	{
		name: "an unclosed form runs to the end",
		html: `<div><form action=/u><p><input name=a></p></div>`,
		want: []form{{Action: "http://as.test/u", Method: "GET", Fields: []Field{text("a", "")}}},
	},
	{
		name: "markup in raw text and comments", title: "T <form>",
		html: `<title>T &lt;form&gt;</title><script>var s = "<form><input name=no>";</script><style>form{}</style>
<!-- <form><input name=no></form> --><noscript><form><input name=no></form></noscript><xmp><form></xmp>`,
		want: []form{},
	},
	{
		name: "svg", title: "Page",
		html: `<head><title>Page</title></head><body><svg viewBox="0 0 1 1"><title>icon</title><style>.a{}</style><path d="M0"/></svg>
<form><input name=a><svg/><input name=b></form></body>`,
		want: []form{{Action: pageURL, Method: "GET", Fields: []Field{text("a", ""), text("b", "")}}},
	},
	{
		name: "the first title with text", title: "First",
		html: `<title>First</title><title></title>`,
		want: []form{},
	},
	{
		name: "not html at all",
		html: `{"resourceType":"Patient"}`,
		want: []form{},
	},
}

func TestParseForms(t *testing.T) {
	base, _ := url.Parse(pageURL)
	for _, c := range formCases {
		t.Run(c.name, func(t *testing.T) {
			forms, title := parseForms(base, c.html)
			if got := simple(forms); !reflect.DeepEqual(got, c.want) {
				t.Errorf("forms:\n got %+v\nwant %+v", got, c.want)
			}
			if title != c.title {
				t.Errorf("title %q, want %q", title, c.title)
			}
		})
	}
}

// servedPages renders the pages the authorization servers show, from the
// real templates.
func servedPages(t testing.TB) map[string]string {
	t.Helper()
	tm, err := ui.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	common := ui.Common{Product: "General Hospital EHR", StaticURL: "/auth/static", CSRF: "b7Jk2mQ9xP4rT8vW1zY6nL3s", Action: "/auth/consent?req=Qm9x2Lp7Rt4Vw8Yz1Nc6Hs3J"}
	withTitle := func(title string) ui.Common { c := common; c.Title = title; return c }
	pages := map[string]struct {
		page string
		data any
	}{
		"login": {ui.PageLogin, ui.LoginPage{Common: withTitle("Sign in"), AppName: "Care <Coordinator>", Username: "dr.o'neil", Error: "Wrong password.", Hint: "doc / pw-doc"}},
		"picker": {ui.PagePicker, ui.PickerPage{Common: withTitle("Choose a patient"), AppName: "App", Query: "smi & th", Patients: []ui.PickerOption{
			{Value: "p1", Label: "Jane Doe", Detail: "1970-01-01"}, {Value: "p2", Label: "John Roe", Selected: true}}}},
		"picker-empty": {ui.PagePicker, ui.PickerPage{Common: withTitle("Choose a patient"), Query: "nobody"}},
		"encounters": {ui.PagePicker, ui.PickerPage{Common: withTitle("Choose an encounter"), Patient: "p1", Encounters: []ui.PickerOption{
			{Value: "e1", Label: "Visit"}, {Value: "e2", Label: "Admission", Detail: "2024-05-01"}}}},
		"consent": {ui.PageConsent, consentPage()},
		"error":   {ui.PageError, ui.ErrorPage{Common: withTitle("Error"), Heading: "Unknown app", Message: "The app is not registered."}},
	}
	out := map[string]string{}
	for name, p := range pages {
		rec := httptest.NewRecorder()
		if err := tm.Render(rec, http.StatusOK, p.page, p.data); err != nil {
			t.Fatal(err)
		}
		out[name] = rec.Body.String()
	}
	return out
}

// consentPage is the consent page of a two-server flow, with one scope
// refused.
func consentPage() ui.ConsentPage {
	page := ui.ConsentPage{
		Common:  ui.Common{Title: "Allow access", Product: "General Hospital EHR", StaticURL: "/auth/static", CSRF: "b7Jk2mQ9xP4rT8vW1zY6nL3s", Action: "/auth/consent?req=Qm9x2Lp7Rt4Vw8Yz1Nc6Hs3J"},
		AppName: "Care Coordinator", UserName: "Dr. Alice Smith", PatientName: "Jane Q. Doe", Server: "http://127.0.0.1:40123/fhir",
		Notes: []string{"The app also asks for access at a second server."},
	}
	for _, s := range []string{"launch", "openid", "fhirUser", "offline_access", "patient/Patient.rs", "patient/Observation.rs", "patient/Condition.rs", "patient/MedicationRequest.rs"} {
		page.Scopes = append(page.Scopes, ui.ConsentScope{Value: s, Description: "Read your " + s, Checked: true})
	}
	page.Scopes = append(page.Scopes, ui.ConsentScope{Value: "system/*.cruds", Description: "Everything", Disabled: true, Reason: "not for this app"})
	return page
}

// TestServedPages: the pages sim serves have their titles and forms, and
// the consent page has what the scripted user presses.
func TestServedPages(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:40123/auth/authorize?client_id=a")
	for name, body := range servedPages(t) {
		forms, title := parseForms(base, body)
		if name != "error" && len(forms) == 0 {
			t.Errorf("%s: no form", name)
		}
		if !strings.HasSuffix(title, "· General Hospital EHR") {
			t.Errorf("%s: title %q", name, title)
		}
	}
	forms, _ := parseForms(base, servedPages(t)["consent"])
	if len(forms) != 1 || forms[0].Method != http.MethodPost || forms[0].Action.String() != "http://127.0.0.1:40123/auth/consent?req=Qm9x2Lp7Rt4Vw8Yz1Nc6Hs3J" {
		t.Fatalf("consent forms %+v", simple(forms))
	}
	f := forms[0]
	if len(f.Fields) != 10 || f.Fields[0] != (Field{Name: "csrf", Value: "b7Jk2mQ9xP4rT8vW1zY6nL3s", Type: "hidden"}) ||
		f.Fields[9] != (Field{Name: "scope", Value: "system/*.cruds", Type: "checkbox", Disabled: true}) {
		t.Fatalf("consent fields %+v", f.Fields)
	}
	if !reflect.DeepEqual(f.Buttons, []Field{submit("decision", "approve"), submit("decision", "deny")}) {
		t.Fatalf("consent buttons %+v", f.Buttons)
	}
}

// TestConsolePages reads the console's chart and register forms (copied
// from ui/templates/console).
func TestConsolePages(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:9400/chart?patient=p1")
	chart := `<form method="post" action="/launch" class="c-launch">
<input type="hidden" name="csrf" value="k">
<input type="hidden" name="patient" value="p1">
<label for="client_id">App</label>
<select id="client_id" name="client_id"><option value="growth">Growth chart (growth)</option><option value="meds">Meds (meds)</option></select>
<label for="encounter">Encounter in context</label>
<select id="encounter" name="encounter"><option value="">None</option><option value="e1">Checkup · 2024-01-02</option></select>
<div class="actions c-wrapbtns">
<button type="submit" class="primary" name="mode" value="tab" formtarget="_blank" id="launch-tab">Open in a new tab</button>
<button type="submit" name="mode" value="frame" id="launch-frame">Open in the EHR frame</button>
</div>
<p class="muted c-note">An EHR launch: the app gets <code>iss</code> and a single-use <code>launch</code>.</p>
</form>`
	forms, _ := parseForms(base, chart)
	want := []form{{Action: "http://127.0.0.1:9400/launch", Method: "POST",
		Fields: []Field{{Name: "csrf", Value: "k", Type: "hidden"}, {Name: "patient", Value: "p1", Type: "hidden"},
			{Name: "client_id", Value: "growth", Type: "select"}, {Name: "encounter", Value: "", Type: "select"}},
		Buttons: []Field{submit("mode", "tab"), submit("mode", "frame")}}}
	if got := simple(forms); !reflect.DeepEqual(got, want) {
		t.Fatalf("chart:\n got %+v\nwant %+v", got, want)
	}
	v := forms[0].Encode(Submit{Button: "mode=frame"})
	if v.Encode() != "client_id=growth&csrf=k&encounter=&mode=frame&patient=p1" {
		t.Fatalf("chart form sends %s", v.Encode())
	}

	register := `<form method="post" action="/register">
<input id="launch_url" name="launch_url" type="text" inputmode="url" value="http://app.test/launch">
<textarea id="redirect_uris" name="redirect_uris" rows="3" required>http://app.test/cb
http://app.test/cb2</textarea>
<fieldset><legend>Client type</legend>
<div class="choice"><input type="radio" id="t-pub" name="type" value="public" checked><label for="t-pub">Public</label></div>
<div class="choice"><input type="radio" id="t-sym" name="type" value="confidential-symmetric"><label for="t-sym">Confidential</label></div>
</fieldset>
<div class="actions"><button type="submit" class="primary">Register</button></div>
</form>`
	forms, _ = parseForms(base, register)
	want = []form{{Action: "http://127.0.0.1:9400/register", Method: "POST",
		Fields: []Field{text("launch_url", "http://app.test/launch"), {Name: "redirect_uris", Value: "http://app.test/cb\nhttp://app.test/cb2", Type: "textarea"},
			{Name: "type", Value: "public", Type: "radio", Checked: true}, {Name: "type", Value: "confidential-symmetric", Type: "radio"}},
		Buttons: []Field{submit("", "")}}}
	if got := simple(forms); !reflect.DeepEqual(got, want) {
		t.Fatalf("register:\n got %+v\nwant %+v", got, want)
	}
}

// TestDoReadsWholePages: pages larger than the pooled read buffer, with
// and without a Content-Length, read whole (to 4 MiB), from several
// browsers at once.
func TestDoReadsWholePages(t *testing.T) {
	pad := strings.Repeat("<p>padding</p>\n", 7000) // ~100 KB
	huge := strings.Repeat("x", maxBody+100)
	mux := http.NewServeMux()
	page := `<!doctype html><title>Big</title>` + pad + `<form method=post action=/end><input name=last value=1></form>`
	mux.HandleFunc("GET /sized", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		fmt.Fprint(w, page)
	})
	mux.HandleFunc("GET /chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		for i := 0; i < len(page); i += 1000 {
			fmt.Fprint(w, page[i:min(i+1000, len(page))])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /huge", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, huge)
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/sized")
		w.WriteHeader(http.StatusFound)
		fmt.Fprint(w, pad) // a body nobody reads
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			b := New(nil)
			for _, path := range []string{"/sized", "/chunked", "/moved"} {
				p, err := b.Get(t.Context(), srv.URL+path)
				if err != nil {
					t.Error(err)
					return
				}
				if p.Body != page || p.Title != "Big" || len(p.Forms) != 1 || p.Forms[0].Fields[0].Value != "1" {
					t.Errorf("browser %d, %s: body of %d bytes, title %q, forms %+v", i, path, len(p.Body), p.Title, simple(p.Forms))
				}
			}
		})
	}
	wg.Wait()
	p, err := New(nil).Get(t.Context(), srv.URL+"/huge")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Body) != maxBody || p.Forms != nil {
		t.Fatalf("a page over the limit: %d bytes, forms %v; want the first %d", len(p.Body), p.Forms, maxBody)
	}
}

// FuzzParseForms: no page makes the parser panic, and what it returns is
// well formed.
func FuzzParseForms(f *testing.F) {
	for _, c := range formCases {
		f.Add(c.html)
	}
	base, _ := url.Parse(pageURL)
	f.Fuzz(func(t *testing.T, body string) {
		forms, _ := parseForms(base, body)
		for _, fm := range forms {
			if fm.Action == nil || (fm.Method != http.MethodGet && fm.Method != http.MethodPost) {
				t.Fatalf("form %+v", fm)
			}
			for _, b := range fm.Buttons {
				if b.Type != "submit" {
					t.Fatalf("button %+v", b)
				}
			}
			for _, fl := range fm.Fields {
				if fl.Type == "" || fl.Type == "submit" || (fl.Type == "checkbox" || fl.Type == "radio") && fl.Value == "" {
					t.Fatalf("field %+v", fl)
				}
			}
			_ = fm.Encode(Submit{Set: map[string]string{"a": "b"}, Check: map[string]bool{"c=on": true}, Button: "x=y"})
		}
	})
}

// BenchmarkParseForms reads the consent page of a two-server flow (the
// real template).
func BenchmarkParseForms(b *testing.B) {
	body := servedPages(b)["consent"]
	base, _ := url.Parse("http://127.0.0.1:40123/auth/authorize?client_id=a")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if forms, _ := parseForms(base, body); len(forms) != 1 {
			b.Fatal(len(forms))
		}
	}
}
