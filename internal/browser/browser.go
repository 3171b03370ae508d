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

	"golang.org/x/net/html"
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
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", req.URL.Redacted(), err)
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "" {
			next, err := req.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				return nil, fmt.Errorf("bad redirect from %s: %w", req.URL.Redacted(), err)
			}
			req, err = http.NewRequestWithContext(req.Context(), http.MethodGet, next.String(), nil)
			if err != nil {
				return nil, fmt.Errorf("follow redirect: %w", err)
			}
			continue
		}
		p := &Page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
		if strings.Contains(resp.Header.Get("Content-Type"), "html") {
			p.Forms, p.Title = parseForms(req.URL, string(body))
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

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func parseForms(base *url.URL, body string) ([]Form, string) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil, ""
	}
	var forms []Form
	var title string
	var cur *Form
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "title":
				if n.FirstChild != nil {
					title = strings.TrimSpace(n.FirstChild.Data)
				}
			case "form":
				action, _ := attr(n, "action")
				u, err := base.Parse(action)
				if err != nil {
					u = base
				}
				method, _ := attr(n, "method")
				m := http.MethodGet
				if strings.EqualFold(method, "post") {
					m = http.MethodPost
				}
				forms = append(forms, Form{Action: u, Method: m})
				cur = &forms[len(forms)-1]
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
				cur = nil
				return
			case "input", "button", "select", "textarea":
				if cur != nil {
					addControl(cur, n)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return forms, title
}

func addControl(f *Form, n *html.Node) {
	name, _ := attr(n, "name")
	value, _ := attr(n, "value")
	typ, _ := attr(n, "type")
	typ = strings.ToLower(typ)
	_, checked := attr(n, "checked")
	_, disabled := attr(n, "disabled")
	switch n.Data {
	case "button":
		if typ == "" || typ == "submit" {
			f.Buttons = append(f.Buttons, Field{Name: name, Value: value, Type: "submit", Disabled: disabled})
		}
		return
	case "select":
		var first, sel string
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && c.Data == "option" {
				v, ok := attr(c, "value")
				if !ok && c.FirstChild != nil {
					v = c.FirstChild.Data
				}
				if first == "" {
					first = v
				}
				if _, s := attr(c, "selected"); s {
					sel = v
				}
			}
		}
		if sel == "" {
			sel = first
		}
		f.Fields = append(f.Fields, Field{Name: name, Value: sel, Type: "select", Disabled: disabled})
		return
	case "textarea":
		if n.FirstChild != nil {
			value = n.FirstChild.Data
		}
		typ = "textarea"
	}
	if typ == "" {
		typ = "text"
	}
	if typ == "submit" {
		f.Buttons = append(f.Buttons, Field{Name: name, Value: value, Type: typ, Disabled: disabled})
		return
	}
	if (typ == "checkbox" || typ == "radio") && value == "" {
		value = "on"
	}
	f.Fields = append(f.Fields, Field{Name: name, Value: value, Type: typ, Checked: checked, Disabled: disabled})
}
