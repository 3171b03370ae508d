package console

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/smart-sim/sim/ui"
)

// sampleApp serves the built-in sample app's page at the launch URL and the
// redirect URI the default world registers for sim-sample-app
// ({console}/sample-app/launch and /sample-app/callback). The page and its
// script (ui/static/sample-app/) do the whole SMART flow in the browser.
func (c *Console) sampleApp(w http.ResponseWriter, r *http.Request) {
	page, err := fs.ReadFile(ui.Static(), "sample-app/index.html")
	if err != nil {
		c.cfg.Logger.ErrorContext(r.Context(), "read sample app", "err", err)
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	origins := []string{"'self'"}
	for _, u := range []string{c.cfg.Servers.EHRFHIR, c.cfg.Servers.OtherFHIR} {
		if o := originOf(u); o != "" {
			origins = append(origins, o)
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The app talks to both organisations' servers from the browser
	// (discovery, token endpoints, FHIR APIs) and to nothing else.
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src "+strings.Join(origins, " ")+"; frame-ancestors 'self'")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(page)
}

// originOf is scheme://host[:port] of an absolute URL.
func originOf(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
		return u[:i+3+j]
	}
	return u
}
