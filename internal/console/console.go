package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/ui"
)

// Servers are the base URLs of the running world.
type Servers struct {
	EHRFHIR, OtherFHIR     string
	EHRIssuer, OtherIssuer string
	Console, API, Brands   string
}

// User is a demo login.
type User struct {
	Username, Password string
	FHIRUser           string // full URL
	Kind               string // "clinician" or "patient"
}

// PatientID is the EHR patient id of a portal user ("" for clinicians).
func (u User) PatientID() string {
	if i := strings.LastIndex(u.FHIRUser, "/Patient/"); i >= 0 {
		return u.FHIRUser[i+len("/Patient/"):]
	}
	return ""
}

// App is a registered app.
type App struct {
	ClientID     string
	Name         string
	SoftwareID   string
	Type         string // public | confidential-symmetric | confidential-asymmetric
	RedirectURIs []string
	LaunchURL    string
	Scope        string
	RegisteredAt []string // "ehr", "other"
	// OtherClientID is the app's client_id at OtherAS when it differs
	// (apps registered through the console get one id per server).
	OtherClientID string
}

// Identifier is a FHIR identifier.
type Identifier struct{ System, Value string }

// Patient is one EHR patient and the truth of its presence at Other.
type Patient struct {
	EHRID        string
	Class        string // shared | other_id_only | ambiguous | absent
	OtherID      string // the record a correct match finds ("" unless shared)
	OtherRecords []string
	Identifiers  []Identifier
	Drifted      []string
}

// Store reads one FHIR server's data (no access control: the console shows
// the simulated world's own view).
type Store interface {
	Read(ctx context.Context, resourceType, id string) (json.RawMessage, error)
	Search(ctx context.Context, resourceType string, params url.Values) ([]json.RawMessage, error)
}

// LaunchRequest asks for an EHR launch.
type LaunchRequest struct {
	ClientID, LaunchURL, Patient, User, Encounter string
}

// Launcher creates EHR launches (the EHR AS's NewLaunch): it returns the
// app's launch URL with iss and launch.
type Launcher interface {
	NewLaunch(ctx context.Context, lr LaunchRequest) (string, error)
}

// ScenarioFile is one bundled scenario.
type ScenarioFile struct {
	File        string // e.g. happy_path.yaml
	Name        string
	Description string
	Teaches     string // the file's leading comment
}

// RunResult is what a scenario run reports.
type RunResult struct {
	Passed  bool
	Summary string
	Flows   []string // trace flow ids
}

// ScenarioRunner runs a bundled scenario against the running world. The
// console shows no run button without one.
type ScenarioRunner interface {
	Run(ctx context.Context, file string) (RunResult, error)
}

// Config is everything the console shows and drives.
type Config struct {
	Servers   Servers
	EHRName   string
	OtherName string
	WorldName string
	Seed      int64
	Users     []User
	Apps      []App
	Patients  []Patient
	Classes   map[string]int
	// OtherOnly is the number of Other patients the EHR does not know.
	OtherOnly int
	// MatchSystems are the identifier systems OtherAS matches by, in order.
	MatchSystems []string
	// SharedSystem, EHRMRNSystem and OtherMRNSystem label identifiers.
	SharedSystem, EHRMRNSystem, OtherMRNSystem string
	EHR, Other                                 Store
	Launcher                                   Launcher
	Trace                                      *trace.Recorder
	Scenarios                                  []ScenarioFile
	Runner                                     ScenarioRunner // nil: the run button is hidden
	// HTTPClient talks to the authorization servers (discovery,
	// registration); nil: a client with a 10 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// SessionCookie is the console's own session cookie.
const SessionCookie = "sim_console_session"

// Console serves the web console. Build it with New.
type Console struct {
	cfg   Config
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session
	apps     []App // registered through the console
	byEHRID  map[string]int
}

// New checks cfg and parses the console's templates.
func New(cfg Config) (*Console, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.EHR == nil || cfg.Other == nil || cfg.Launcher == nil {
		return nil, errors.New("console: EHR, Other and Launcher are required")
	}
	c := &Console{cfg: cfg, sessions: map[string]*session{}, byEHRID: map[string]int{}}
	for i, p := range cfg.Patients {
		c.byEHRID[p.EHRID] = i
	}
	pages, err := loadPages(ui.FS())
	if err != nil {
		return nil, err
	}
	c.pages = pages
	return c, nil
}

// Page templates under templates/console/.
var pageNames = []string{"home.html", "ehr_login.html", "ehr_patients.html", "chart.html", "frame.html",
	"register.html", "directories.html", "traces.html", "flow.html", "scenarios.html", "error.html"}

func loadPages(fsys fs.FS) (map[string]*template.Template, error) {
	layout, err := fs.ReadFile(fsys, "templates/console/layout.html")
	if err != nil {
		return nil, fmt.Errorf("load console layout: %w", err)
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		body, err := fs.ReadFile(fsys, "templates/console/"+name)
		if err != nil {
			return nil, fmt.Errorf("load console template %s: %w", name, err)
		}
		t, err := template.New("layout").Funcs(funcs).Parse(string(layout))
		if err == nil {
			_, err = t.New(name).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("parse console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var funcs = template.FuncMap{
	"join":  strings.Join,
	"short": shortSystem,
	"add":   func(a, b int) int { return a + b },
	"sub":   func(a, b int) int { return a - b },
}

// Mount registers the console's routes on mux (everything but /api/).
func (c *Console) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", c.home)
	mux.Handle("GET /static/", http.StripPrefix("/static/", noListing(http.FileServerFS(ui.Static()))))

	mux.HandleFunc("GET /ehr", c.ehrHome)
	mux.HandleFunc("POST /ehr/login", c.ehrLogin)
	mux.HandleFunc("POST /ehr/logout", c.ehrLogout)
	mux.HandleFunc("GET /ehr/patients/{id}", c.chart)
	mux.HandleFunc("POST /ehr/launch", c.launch)
	mux.HandleFunc("GET /register", c.registerForm)
	mux.HandleFunc("POST /register", c.register)

	mux.HandleFunc("GET /directories", c.directories)
	mux.HandleFunc("GET /traces", c.traces)
	mux.HandleFunc("GET /traces/events", c.traceEvents)
	mux.HandleFunc("GET /traces/{id}", c.flow)
	mux.HandleFunc("GET /scenarios", c.scenarios)
	mux.HandleFunc("POST /scenarios/run", c.runScenario)

	// The sample app starts from an EHR launch: its bare address leads to
	// the simulated EHR, where apps are launched.
	mux.Handle("GET /sample-app/{$}", http.RedirectHandler("/ehr", http.StatusSeeOther))
	mux.HandleFunc("GET /sample-app/launch", c.sampleApp)
	mux.HandleFunc("GET /sample-app/callback", c.sampleApp)
	mux.HandleFunc("/", c.notFound)
}

// base is what every console page shows.
type base struct {
	Title   string
	Nav     string // the active section
	World   string
	Servers Servers
	CSRF    string
	User    *User
}

func (c *Console) base(title, nav string, s *session) base {
	b := base{Title: title, Nav: nav, World: c.cfg.WorldName, Servers: c.cfg.Servers}
	if s != nil {
		u := s.user
		b.User, b.CSRF = &u, s.csrf
	}
	return b
}

// render writes a page; a template error before anything was written
// becomes a plain 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	t, ok := c.pages[page]
	var buf bytes.Buffer
	if !ok {
		c.cfg.Logger.ErrorContext(r.Context(), "render console page", "page", page, "err", "no such page")
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, page, data); err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "render console page", "page", page, "err", err)
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Inline SVG diagrams carry their own <style>; nothing else is inline.
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; form-action 'self' "+c.cfg.Servers.Console)
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	base
	Heading, Message string
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	c.render(w, r, status, "error.html", errorPage{base: c.base(heading, "", c.session(r)), Heading: heading, Message: msg})
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	c.fail(w, r, http.StatusNotFound, "Page not found", "There is no console page at this address.")
}

// sameOrigin refuses cross-site form posts (CSRF): the browser's Origin
// (or Referer) must be the console's.
func (c *Console) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		return o == c.cfg.Servers.Console
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return ref == c.cfg.Servers.Console || strings.HasPrefix(ref, c.cfg.Servers.Console+"/")
	}
	// Non-browser clients (curl, tests) send none of these.
	return r.Header.Get("Origin") == ""
}

// shortSystem names a well-known identifier system briefly.
func shortSystem(sys string) string {
	s := strings.TrimSuffix(sys, "/")
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// systemLabel names an identifier system for people.
func (c *Console) systemLabel(sys string) string {
	switch sys {
	case c.cfg.SharedSystem:
		return "shared id"
	case c.cfg.EHRMRNSystem:
		return c.cfg.EHRName + " MRN"
	case c.cfg.OtherMRNSystem:
		return c.cfg.OtherName + " MRN"
	}
	return shortSystem(sys)
}

// noListing answers 404 for directories instead of listing their files.
func noListing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
