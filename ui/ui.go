package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

//go:embed templates static
var files embed.FS

// FS returns the embedded files: templates/*.html and static/*.
func FS() fs.FS { return files }

// Static returns the static assets rooted at static/ (serve under a
// prefix with http.FileServerFS).
func Static() fs.FS {
	sub, _ := fs.Sub(files, "static")
	return sub
}

// Page names every Templates must hold.
const (
	PageLogin   = "login.html"
	PagePicker  = "picker.html"
	PageConsent = "consent.html"
	PageError   = "error.html"
)

var required = []string{PageLogin, PagePicker, PageConsent, PageError}

// Templates holds the parsed pages.
type Templates struct {
	pages map[string]*template.Template
	// FrameAncestors are the origins allowed to show the pages in a frame
	// (an EHR that embeds apps, whose authorization then runs inside its
	// frame). Empty: no framing at all.
	FrameAncestors []string
}

// Load parses every page (each with layout.html) once from fsys (nil: the
// embedded files) and fails when a required page is missing.
func Load(fsys fs.FS) (*Templates, error) {
	if fsys == nil {
		fsys = files
	}
	layout, err := fs.ReadFile(fsys, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	t := &Templates{pages: map[string]*template.Template{}}
	for _, name := range required {
		body, err := fs.ReadFile(fsys, "templates/"+name)
		if err != nil {
			return nil, fmt.Errorf("load template %s: %w", name, err)
		}
		tmpl, err := template.New("layout").Funcs(funcs).Parse(string(layout))
		if err == nil {
			_, err = tmpl.New(name).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		t.pages[name] = tmpl
	}
	return t, nil
}

var funcs = template.FuncMap{
	"join": strings.Join,
}

// Common is what every page shows: set by the authorization server so
// the EHR and OtherAS look like two products.
type Common struct {
	Title     string // page title, e.g. "Sign in"
	Product   string // e.g. "General Hospital EHR"
	StaticURL string // prefix of static assets, e.g. "/auth/static"
	CSRF      string // hidden csrf field value
	Action    string // form action URL
}

// LoginPage is PageLogin's data.
type LoginPage struct {
	Common
	AppName  string
	Username string
	Error    string
	Hint     string // demo credentials, optional
}

// PickerOption is one patient or encounter choice.
type PickerOption struct {
	Value, Label, Detail string
	Selected             bool
}

// PickerPage is PagePicker's data.
type PickerPage struct {
	Common
	AppName    string
	Query      string
	Patients   []PickerOption
	Encounters []PickerOption // shown when a patient is chosen and encounters are asked
	Patient    string         // chosen patient (encounter step)
	Error      string
}

// ConsentScope is one checkbox on the consent page.
type ConsentScope struct {
	Value       string // the scope string (checkbox value)
	Description string // plain words
	Checked     bool
	Disabled    bool   // refused: shown unchecked with Reason
	Reason      string // why it is refused
}

// ConsentPage is PageConsent's data.
type ConsentPage struct {
	Common
	AppName     string
	UserName    string
	PatientName string
	Server      string // the data server the app will reach
	Scopes      []ConsentScope
	Notes       []string
}

// ErrorPage is PageError's data.
type ErrorPage struct {
	Common
	Heading string
	Message string
}

// renderBuffers hold pages being rendered; a page is written whole, with
// its Content-Length.
var renderBuffers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 8<<10)) }}

// maxPooledPage: a buffer grown beyond this by an unusually large page is
// left to the collector.
const maxPooledPage = 64 << 10

// Render writes page with data and status. A template error after
// nothing was written becomes a plain 500.
func (t *Templates) Render(w http.ResponseWriter, status int, page string, data any) error {
	tmpl, ok := t.pages[page]
	if !ok {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return fmt.Errorf("render: no page %s", page)
	}
	buf := renderBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledPage {
			buf.Reset()
			renderBuffers.Put(buf)
		}
	}()
	if err := tmpl.ExecuteTemplate(buf, page, data); err != nil {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return fmt.Errorf("render %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if len(t.FrameAncestors) == 0 {
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	} else {
		// X-Frame-Options cannot name another origin; CSP alone decides.
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'self' "+strings.Join(t.FrameAncestors, " "))
	}
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
