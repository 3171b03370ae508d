package scenarios

import "net/http"

// mountConsole serves the web console on the console origin (everything
// but /api/).
func (r *Running) mountConsole(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", r.home)
}

// home is the console's front page until the full console exists: the
// ecosystem at a glance.
func (r *Running) home(w http.ResponseWriter, req *http.Request) {
	writeJSON(w, http.StatusOK, r.ready)
}
