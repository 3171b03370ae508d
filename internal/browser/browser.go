package browser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"github.com/smart-sim/sim/internal/httpkit"
)

// Browser is one user agent with its own cookies.
type Browser struct {
	// StopAt: a redirect to a URL starting with one of these prefixes is
	// not followed; Page.Redirect holds it.
	StopAt []string
	client *http.Client
	// MaxRedirects bounds a redirect chain (default 20).
	MaxRedirects int
	// MaxForms bounds the forms one Walk submits (default 6).
	MaxForms int
}

// New returns a browser using transport (nil: http.DefaultTransport) that
// stops at the given URL prefixes.
func New(transport http.RoundTripper, stopAt ...string) *Browser {
	jar, _ := cookiejar.New(nil)
	b := &Browser{StopAt: stopAt}
	b.client = &http.Client{
		Transport: transport,
		Jar:       jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return b
}

// Client returns the underlying client (cookie jar, no redirect following).
func (b *Browser) Client() *http.Client { return b.client }

// Page is where a navigation ended.
type Page struct {
	URL      *url.URL
	Status   int
	Header   http.Header
	Body     string
	Redirect *url.URL // set when navigation stopped at a StopAt prefix
	Forms    []Form
	Title    string
}

// Form is one HTML form.
type Form struct {
	Action  *url.URL // resolved
	Method  string   // GET or POST
	Fields  []Field
	Buttons []Field // submit buttons (name, value)
}

// Field is one form control.
type Field struct {
	Name, Value, Type string
	Checked, Disabled bool
}

// Get navigates to rawURL.
func (b *Browser) Get(ctx context.Context, rawURL string) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("navigate: %w", err)
	}
	return b.Do(req)
}

func (b *Browser) stop(u *url.URL) bool {
	s := u.String()
	for _, p := range b.StopAt {
		if p != "" && strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Do sends req and follows redirects (as GET) until a page or a StopAt URL.
func (b *Browser) Do(req *http.Request) (*Page, error) {
	max := b.MaxRedirects
	if max == 0 {
		max = 20
	}
	for range max + 1 {
		if b.stop(req.URL) {
			return &Page{URL: req.URL, Redirect: req.URL}, nil
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("navigate %s: %w", req.URL.Redacted(), err)
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			// A redirect's body is never shown: read it to the end (so
			// the connection is reused) without keeping it.
			_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
			resp.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", req.URL.Redacted(), err)
			}
			next, err := req.URL.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("bad redirect from %s: %w", req.URL.Redacted(), err)
			}
			req, err = http.NewRequestWithContext(req.Context(), http.MethodGet, next.String(), nil)
			if err != nil {
				return nil, fmt.Errorf("follow redirect: %w", err)
			}
			continue
		}
		b, err := httpkit.ReadBody(resp, maxBody)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", req.URL.Redacted(), err)
		}
		body := string(b)
		p := &Page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: body}
		if strings.Contains(resp.Header.Get("Content-Type"), "html") {
			p.Forms, p.Title = parseForms(req.URL, body)
		}
		return p, nil
	}
	return nil, errors.New("too many redirects")
}

// FormWith returns the first form that has a control or button named name.
func (p *Page) FormWith(name string) (*Form, bool) {
	for i := range p.Forms {
		if f := &p.Forms[i]; f.has(name) {
			return f, true
		}
	}
	return nil, false
}

// Values returns the checkbox values named name (checked or not).
func (f *Form) Values(name string) []string {
	var out []string
	for _, fl := range f.Fields {
		if fl.Name == name {
			out = append(out, fl.Value)
		}
	}
	return out
}

// Submit describes how to fill a form.
type Submit struct {
	// Set overrides (or adds) text/hidden/radio values by name.
	Set map[string]string
	// Check sets checkbox states by "name=value" key (true checked).
	Check map[string]bool
	// Button is "name=value" of the submit button to press ("" = none).
	Button string
}

// Encode builds the form data a browser would send.
func (f *Form) Encode(s Submit) url.Values {
	v := url.Values{}
	done := map[string]bool{}
	for _, fl := range f.Fields {
		if fl.Disabled || fl.Name == "" {
			continue
		}
		switch fl.Type {
		case "checkbox":
			on := fl.Checked
			if c, ok := s.Check[fl.Name+"="+fl.Value]; ok {
				on = c
			}
			if on {
				v.Add(fl.Name, fl.Value)
			}
		case "radio":
			if val, ok := s.Set[fl.Name]; ok {
				if !done[fl.Name] {
					v.Set(fl.Name, val)
					done[fl.Name] = true
				}
			} else if fl.Checked {
				v.Set(fl.Name, fl.Value)
			}
		default:
			if val, ok := s.Set[fl.Name]; ok {
				v.Set(fl.Name, val)
				done[fl.Name] = true
			} else {
				v.Add(fl.Name, fl.Value)
			}
		}
	}
	for k, val := range s.Set {
		if _, ok := v[k]; !ok && !done[k] {
			v.Set(k, val)
		}
	}
	if s.Button != "" {
		name, value, _ := strings.Cut(s.Button, "=")
		v.Set(name, value)
	}
	return v
}

// Submit sends the form filled per s and follows redirects.
func (b *Browser) Submit(ctx context.Context, f *Form, s Submit) (*Page, error) {
	data := f.Encode(s)
	var req *http.Request
	var err error
	if f.Method == http.MethodGet {
		u := *f.Action
		u.RawQuery = data.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, f.Action.String(), strings.NewReader(data.Encode()))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	return b.Do(req)
}
