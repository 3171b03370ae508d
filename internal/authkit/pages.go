package authkit

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/smart-sim/sim/ui"
)

// Pages renders an authorization server's HTML pages (sign-in, picker,
// consent, errors) with the product name and static prefix every page
// shares.
type Pages struct {
	Templates *ui.Templates
	Product   string // shown on every page
	StaticURL string // prefix of the static assets, e.g. "/auth/static"
	Logger    *slog.Logger
}

// LoadPages loads the embedded templates, allowing framing by
// frameAncestors only (none: no framing).
func LoadPages(product, staticURL string, frameAncestors []string, logger *slog.Logger) (Pages, error) {
	t, err := ui.Load(nil)
	if err != nil {
		return Pages{}, err
	}
	t.FrameAncestors = frameAncestors
	return Pages{Templates: t, Product: product, StaticURL: staticURL, Logger: logger}, nil
}

// Common is what every page shows, under title.
func (p Pages) Common(title string) ui.Common {
	return ui.Common{Title: title, Product: p.Product, StaticURL: p.StaticURL}
}

// Render writes page with data and status.
func (p Pages) Render(w http.ResponseWriter, status int, page string, data any) error {
	return p.Templates.Render(w, status, page, data)
}

// Error shows an error the browser cannot be redirected with (RFC 6749
// §4.1.2.1: bad client_id or redirect_uri).
func (p Pages) Error(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	page := ui.ErrorPage{Common: p.Common("Something went wrong"), Heading: heading, Message: msg}
	if err := p.Render(w, status, ui.PageError, page); err != nil && p.Logger != nil {
		p.Logger.ErrorContext(r.Context(), "render error page", "err", err)
	}
}

// Show shows a page error of ReadAuthorize or the page handlers.
func (p Pages) Show(w http.ResponseWriter, r *http.Request, e *PageError) {
	if e.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "GET, POST")
	}
	p.Error(w, r, e.Status, e.Heading, e.Message)
}

// SameBase reports whether two base URLs are the same but for a trailing
// slash.
func SameBase(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}
