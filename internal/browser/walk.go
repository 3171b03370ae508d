package browser

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// has reports whether the form has a control or submit button named name.
func (f *Form) has(name string) bool {
	for _, fl := range f.Fields {
		if fl.Name == name {
			return true
		}
	}
	for _, fl := range f.Buttons {
		if fl.Name == name {
			return true
		}
	}
	return false
}

// PostFormWith returns the first POST form that has a control or button
// named name (a GET search form on the same page is passed over; an
// empty name matches nothing).
func (p *Page) PostFormWith(name string) (*Form, bool) {
	if name == "" {
		return nil, false
	}
	for i := range p.Forms {
		if f := &p.Forms[i]; f.Method == http.MethodPost && f.has(name) {
			return f, true
		}
	}
	return nil, false
}

// HasPostField reports whether a POST form on the page has a control or
// button named name: the way to tell a login page ("password") from a
// picker ("patient") or a consent page ("decision").
func (p *Page) HasPostField(name string) bool {
	_, ok := p.PostFormWith(name)
	return ok
}

// Step is how Walk fills one kind of page.
type Step struct {
	// Field names the control or button that marks the page: the step
	// submits the first POST form that has it.
	Field string
	// Submit is how that form is filled.
	Submit Submit
	// Seen, when not nil, receives the page before its form is submitted.
	Seen func(*Page)
}

// ErrStuck: Walk reached a page that no step fills.
var ErrStuck = errors.New("no step fills the page")

// ErrNoRedirect: Walk submitted MaxForms forms without stopping at a
// StopAt URL.
var ErrNoRedirect = errors.New("no redirect to a stop URL")

// Walk fills pages from page on, submitting each with the first step
// (in order) whose Field a POST form on it has, until navigation stops at
// a StopAt URL (the returned page's Redirect) or MaxForms forms (default 6)
// have been sent. On error it returns the last page reached with it.
func (b *Browser) Walk(ctx context.Context, page *Page, steps ...Step) (*Page, error) {
	limit := b.MaxForms
	if limit == 0 {
		limit = 6
	}
	for range limit {
		if page.Redirect != nil {
			return page, nil
		}
		next, err := b.step(ctx, page, steps)
		if err != nil {
			return page, err
		}
		page = next
	}
	if page.Redirect == nil {
		return page, fmt.Errorf("walk from %s: %w after %d forms", page.URL.Redacted(), ErrNoRedirect, limit)
	}
	return page, nil
}

func (b *Browser) step(ctx context.Context, page *Page, steps []Step) (*Page, error) {
	for _, s := range steps {
		f, ok := page.PostFormWith(s.Field)
		if !ok {
			continue
		}
		if s.Seen != nil {
			s.Seen(page)
		}
		next, err := b.Submit(ctx, f, s.Submit)
		if err != nil {
			return nil, fmt.Errorf("submit the %q form: %w", s.Field, err)
		}
		return next, nil
	}
	return nil, fmt.Errorf("walk at %s (status %d): %w", page.URL.Redacted(), page.Status, ErrStuck)
}
