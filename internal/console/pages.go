package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// setting is one copyable value.
type setting struct {
	Label, Value, Note string
}

type org struct {
	Name, Role, FHIR, Issuer string
	Links                    []setting
}

type homePage struct {
	base
	Orgs     []org
	Client   []setting
	Users    []User
	Apps     []App
	Classes  []classCount
	Patients int
}

type classCount struct {
	Class, Label string
	Count        int
}

var classLabels = map[string]string{
	"shared":        "shared: matchable",
	"other_id_only": "other_id_only: only Other's MRN",
	"ambiguous":     "ambiguous: two Other records",
	"absent":        "absent: not at Other",
}

// sampleScope is what the sample app asks the EHR for.
const sampleScope = "launch launch-token openid fhirUser patient/*.rs user/*.rs"

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	sv := c.cfg.Servers
	page := homePage{base: c.base("Ecosystem", "home", c.session(r)), Users: c.cfg.Users, Apps: c.allApps(), Patients: len(c.cfg.Patients)}
	page.Orgs = []org{
		{Name: c.cfg.EHRName, Role: "EHR", FHIR: sv.EHRFHIR, Issuer: sv.EHRIssuer, Links: []setting{
			{Label: "SMART configuration", Value: sv.EHRFHIR + "/.well-known/smart-configuration"},
			{Label: "OpenID configuration", Value: sv.EHRIssuer + "/.well-known/openid-configuration"},
			{Label: "CapabilityStatement", Value: sv.EHRFHIR + "/metadata"},
			{Label: "Brand bundle", Value: sv.Brands},
		}},
		{Name: c.cfg.OtherName, Role: "Other", FHIR: sv.OtherFHIR, Issuer: sv.OtherIssuer, Links: []setting{
			{Label: "SMART configuration", Value: sv.OtherFHIR + "/.well-known/smart-configuration"},
			{Label: "OpenID configuration", Value: sv.OtherIssuer + "/.well-known/openid-configuration"},
			{Label: "CapabilityStatement", Value: sv.OtherFHIR + "/metadata"},
		}},
	}
	page.Client = []setting{
		{Label: "iss (FHIR base)", Value: sv.EHRFHIR, Note: "everything else is discovered from {iss}/.well-known/smart-configuration"},
		{Label: "client_id", Value: "sim-sample-app", Note: "public client, PKCE S256; the same client_id at OtherAS"},
		{Label: "redirect_uri", Value: sv.Console + "/sample-app/callback"},
		{Label: "launch URL", Value: sv.Console + "/sample-app/launch"},
		{Label: "scope at the EHR", Value: sampleScope},
		{Label: "resource (RFC 8707)", Value: sv.OtherFHIR, Note: "names the server the launch-token is for"},
		{Label: "scope at Other", Value: "launch openid fhirUser patient/*.rs user/*.rs", Note: "with launch=<launch_token> and aud=Other FHIR base"},
		{Label: "control API", Value: sv.API},
	}
	for _, cl := range classOrder {
		page.Classes = append(page.Classes, classCount{Class: cl, Label: classLabels[cl], Count: c.cfg.Classes[cl]})
	}
	c.render(w, r, http.StatusOK, "home.html", page)
}

// match explains OtherAS's identifier match for one EHR patient.
type match struct {
	Outcome string // matched | ambiguous | not found
	Steps   []string
}

type otherRecord struct {
	Summary
	Drifted bool
}

type dirRow struct {
	Patient
	EHR   Summary
	Other []otherRecord
	Match match
}

type directoriesPage struct {
	base
	EHRName, OtherName string
	Overlap            template.HTML
	Classes            []classCount
	Class              string
	Rows               []dirRow
	Page, Pages        int
	Total              int
	OtherOnly          int
	MatchSystems       []string
	Prev, Next         string
}

const dirPageSize = 15

func (c *Console) directories(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	class := q.Get("class")
	if class != "" && !slices.Contains(classOrder, class) {
		class = ""
	}
	var list []Patient
	for _, p := range c.cfg.Patients {
		if class == "" || p.Class == class {
			list = append(list, p)
		}
	}
	pages := max(1, (len(list)+dirPageSize-1)/dirPageSize)
	n, _ := strconv.Atoi(q.Get("page"))
	n = min(max(n, 1), pages)
	page := directoriesPage{base: c.base("Patient directories", "directories", c.session(r)), EHRName: c.cfg.EHRName, OtherName: c.cfg.OtherName,
		Overlap: c.overlapSVG(), Class: class, Page: n, Pages: pages, Total: len(list), OtherOnly: c.cfg.OtherOnly, MatchSystems: c.cfg.MatchSystems}
	for _, cl := range classOrder {
		page.Classes = append(page.Classes, classCount{Class: cl, Label: classLabels[cl], Count: c.cfg.Classes[cl]})
	}
	link := func(p int) string {
		v := url.Values{"page": {strconv.Itoa(p)}}
		if class != "" {
			v.Set("class", class)
		}
		return "/directories?" + v.Encode()
	}
	if n > 1 {
		page.Prev = link(n - 1)
	}
	if n < pages {
		page.Next = link(n + 1)
	}
	for _, p := range list[min((n-1)*dirPageSize, len(list)):min(n*dirPageSize, len(list))] {
		row := dirRow{Patient: p}
		if raw, err := c.cfg.EHR.Read(ctx, "Patient", p.EHRID); err == nil {
			row.EHR = c.summary(raw)
		}
		for _, id := range p.OtherRecords {
			if raw, err := c.cfg.Other.Read(ctx, "Patient", id); err == nil {
				row.Other = append(row.Other, otherRecord{Summary: c.summary(raw), Drifted: slices.Contains(p.Drifted, id)})
			}
		}
		row.Match = c.explain(ctx, p, row.Other)
		page.Rows = append(page.Rows, row)
	}
	c.render(w, r, http.StatusOK, "directories.html", page)
}

// explain replays OtherAS's match for p against the Other directory: each
// configured identifier system in order, found once (a match), twice or
// more (ambiguous: refused) or not at all (next system).
func (c *Console) explain(ctx context.Context, p Patient, other []otherRecord) match {
	var m match
	for _, sys := range c.cfg.MatchSystems {
		val := ""
		for _, id := range p.Identifiers {
			if id.System == sys {
				val = id.Value
				break
			}
		}
		label := c.systemLabel(sys)
		if val == "" {
			m.Steps = append(m.Steps, fmt.Sprintf("The EHR record has no %s.", label))
			continue
		}
		res, err := c.cfg.Other.Search(ctx, "Patient", url.Values{"identifier": {sys + "|" + val}, "_count": {"10"}})
		if err != nil {
			m.Steps = append(m.Steps, fmt.Sprintf("Searching %s %s failed.", label, val))
			continue
		}
		switch len(res) {
		case 0:
			m.Steps = append(m.Steps, fmt.Sprintf("%s %s: found not at all.", label, val))
			continue
		case 1:
			s := c.summary(res[0])
			m.Outcome = "matched"
			m.Steps = append(m.Steps, fmt.Sprintf("%s %s: found once, Other record %s. Patient scopes are granted.", label, val, s.ID))
			return m
		default:
			ids := make([]string, 0, len(res))
			for _, x := range res {
				ids = append(ids, c.summary(x).ID)
			}
			m.Outcome = "ambiguous"
			m.Steps = append(m.Steps, fmt.Sprintf("%s %s: found %d times (%s). More than one match: patient scopes are refused.", label, val, len(res), strings.Join(ids, ", ")))
			return m
		}
	}
	m.Outcome = "not found"
	if len(other) > 0 {
		m.Steps = append(m.Steps, "Other knows this person only under its own MRN, which the EHR does not record: no match, patient scopes are refused.")
	} else {
		m.Steps = append(m.Steps, "Other has no record of this person: patient scopes are refused.")
	}
	return m
}

// classColors are the overlap picture's colours (each with at least 4.5:1
// contrast against white text).
var classColors = map[string]string{
	"shared": "#1a7f37", "other_id_only": "#9a6700", "ambiguous": "#8250df", "absent": "#57606a", "other_only": "#0b5cad",
}

// overlapSVG draws both directories as stacked bars: the EHR's patients by
// class, and Other's records by the EHR class they belong to.
func (c *Console) overlapSVG() template.HTML {
	cl := c.cfg.Classes
	type seg struct {
		class, label string
		n            int
	}
	ehrSegs := []seg{{"shared", "shared", cl["shared"]}, {"other_id_only", "other_id_only", cl["other_id_only"]}, {"ambiguous", "ambiguous", cl["ambiguous"]}, {"absent", "absent", cl["absent"]}}
	otherSegs := []seg{{"shared", "shared", cl["shared"]}, {"other_id_only", "other_id_only", cl["other_id_only"]}, {"ambiguous", "ambiguous ×2", 2 * cl["ambiguous"]}, {"other_only", "Other only", c.cfg.OtherOnly}}
	total := func(s []seg) int {
		n := 0
		for _, x := range s {
			n += x.n
		}
		return n
	}
	nE, nO := total(ehrSegs), total(otherSegs)
	widest := max(nE, nO, 1)
	const left, barW, barH, top = 170.0, 560.0, 34.0, 16.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="overlap" viewBox="0 0 760 130" role="img" aria-labelledby="ov-t ov-d" xmlns="http://www.w3.org/2000/svg">`)
	fmt.Fprintf(&b, `<title id="ov-t">Overlap of the two patient directories</title><desc id="ov-d">%s has %d patients: %d shared, %d other_id_only, %d ambiguous, %d absent. %s has %d records, %d of them for patients the EHR does not know.</desc>`,
		template.HTMLEscapeString(c.cfg.EHRName), nE, cl["shared"], cl["other_id_only"], cl["ambiguous"], cl["absent"], template.HTMLEscapeString(c.cfg.OtherName), nO, c.cfg.OtherOnly)
	drawBar := func(y float64, name string, segs []seg, n int) {
		fmt.Fprintf(&b, `<text x="0" y="%.0f" class="ov-name">%s</text><text x="0" y="%.0f" class="ov-sub">%d records</text>`, y+15, template.HTMLEscapeString(clip(name, 21)), y+30, n)
		x := left
		for _, s := range segs {
			if s.n == 0 {
				continue
			}
			w := barW * float64(s.n) / float64(widest)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s"><title>%s: %d</title></rect>`, x, y, w, barH, classColors[s.class], s.label, s.n)
			if w > 44 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="ov-seg">%d</text>`, x+w/2, y+22, s.n)
			}
			x += w
		}
	}
	drawBar(top, c.cfg.EHRName, ehrSegs, nE)
	drawBar(top+barH+22, c.cfg.OtherName, otherSegs, nO)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text above is escaped or a number
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

type scenariosPage struct {
	base
	Scenarios []ScenarioFile
	Runner    bool
	Result    *RunResult
	Ran       string
}

func (c *Console) scenarios(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "scenarios.html", scenariosPage{base: c.base("Scenarios", "scenarios", c.session(r)), Scenarios: c.cfg.Scenarios, Runner: c.cfg.Runner != nil})
}

// runScenario runs one bundled scenario through the ScenarioRunner seam.
func (c *Console) runScenario(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Runner == nil {
		c.fail(w, r, http.StatusNotFound, "The scenario runner is coming", "Scenarios cannot be run from the console yet; use sim run.")
		return
	}
	if !c.sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "Request refused", "The form was not sent from the console.")
		return
	}
	file := r.PostFormValue("file")
	if !slices.ContainsFunc(c.cfg.Scenarios, func(s ScenarioFile) bool { return s.File == file }) {
		c.fail(w, r, http.StatusBadRequest, "Unknown scenario", "Choose one of the bundled scenarios.")
		return
	}
	res, err := c.cfg.Runner.Run(r.Context(), file)
	if err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "run scenario", "file", file, "err", err)
		res = RunResult{Summary: "The scenario could not be run."}
	}
	c.render(w, r, http.StatusOK, "scenarios.html", scenariosPage{base: c.base("Scenarios", "scenarios", c.session(r)), Scenarios: c.cfg.Scenarios, Runner: true, Result: &res, Ran: file})
}
