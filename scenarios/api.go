package scenarios

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/trace"
)

// controlAPI is the JSON API scripts and test suites drive sim with
// (contract.md "Control API"). It is mounted under /api on the console
// origin.
type controlAPI struct {
	r      *Running
	logger *slog.Logger
}

func (a *controlAPI) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/world", a.world)
	mux.HandleFunc("POST /api/launches", a.launch)
	mux.HandleFunc("GET /api/traces", a.traces)
	mux.HandleFunc("GET /api/traces/{id}", a.traceByID)
	mux.HandleFunc("GET /api/faults", a.getFaults)
	mux.HandleFunc("PUT /api/faults", a.putFaults)
	mux.HandleFunc("DELETE /api/faults", a.deleteFaults)
	mux.HandleFunc("GET /api/clock", a.getClock)
	mux.HandleFunc("POST /api/clock", a.postClock)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// WorldView is the body of GET {api}/world.
type WorldView struct {
	Name string `json:"name"`
	Seed int64  `json:"seed"`
	// Fingerprint identifies the effective world: two servers with the
	// same fingerprint serve the same world.
	Fingerprint string         `json:"fingerprint"`
	Servers     Ready          `json:"servers"`
	Users       []UserView     `json:"users"`
	Patients    []PatientView  `json:"patients"`
	Total       int            `json:"total_patients"`
	Offset      int            `json:"offset"`
	Limit       int            `json:"limit"`
	Classes     map[string]int `json:"classes"`
	Apps        []AppView      `json:"apps"`
}

// UserView is one demo login.
type UserView struct {
	Username string `json:"username"`
	Password string `json:"password"`
	FHIRUser string `json:"fhirUser"`
	Kind     string `json:"kind"`
}

// PatientView is one EHR patient and the truth of its presence at Other.
type PatientView struct {
	EHRID string `json:"ehr_id"`
	Class string `json:"class"`
	// OtherID is the record a correct identifier match finds; null unless
	// the class is shared.
	OtherID      *string          `json:"other_id"`
	OtherRecords []string         `json:"other_records"`
	Identifiers  []IdentifierView `json:"identifiers"`
	// Drifted lists the Other records whose name or birth date differ
	// slightly from the EHR's.
	Drifted []string `json:"drifted,omitempty"`
}

// IdentifierView is a FHIR identifier.
type IdentifierView struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// AppView is one registered app.
type AppView struct {
	ClientID     string   `json:"client_id"`
	Name         string   `json:"name"`
	SoftwareID   string   `json:"software_id,omitempty"`
	Type         string   `json:"type"`
	RedirectURIs []string `json:"redirect_uris"`
	LaunchURL    string   `json:"launch_url,omitempty"`
	Scope        string   `json:"scope,omitempty"`
	RegisteredAt []string `json:"registered_at"`
}

const defaultWorldLimit = 1000

func (a *controlAPI) world(w http.ResponseWriter, r *http.Request) {
	limit, offset := defaultWorldLimit, 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "invalid_request", "limit must be a non-negative integer")
			return
		}
		limit = n
	}
	if s := r.URL.Query().Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "invalid_request", "offset must be a non-negative integer")
			return
		}
		offset = n
	}
	writeJSON(w, http.StatusOK, a.r.worldView(offset, limit))
}

// launchErrorText says what was wrong with a launch request, without
// echoing internal error text.
var launchErrorText = map[string]string{
	"unknown_client":    "client_id names no app registered at the EHR (see apps in GET /api/world)",
	"unknown_patient":   "patient names no EHR patient (use an ehr_id from GET /api/world)",
	"unknown_user":      "user names no user of the world (use a username from GET /api/world)",
	"unknown_encounter": "encounter is not one of the patient's encounters",
	"no_launch_url":     "no launch_url given and the app registered none",
}

// LaunchRequest is the body of POST {api}/launches.
type LaunchRequest struct {
	ClientID  string `json:"client_id"`
	LaunchURL string `json:"launch_url"`
	Patient   string `json:"patient"`
	User      string `json:"user"`
	Encounter string `json:"encounter,omitempty"`
}

func (a *controlAPI) launch(w http.ResponseWriter, r *http.Request) {
	var req LaunchRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "body must be a JSON object with client_id, launch_url, patient, user and optionally encounter: "+err.Error())
		return
	}
	if req.ClientID == "" || req.Patient == "" || req.User == "" {
		apiError(w, http.StatusBadRequest, "invalid_request", "client_id, patient and user are required")
		return
	}
	u, err := a.r.ehrAS.NewLaunch(r.Context(), ehr.LaunchRequest{
		ClientID: req.ClientID, LaunchURL: req.LaunchURL, Patient: req.Patient, User: req.User, Encounter: req.Encounter,
	})
	if err != nil {
		code := "invalid_request"
		switch {
		case errors.Is(err, ehr.ErrUnknownClient):
			code = "unknown_client"
		case errors.Is(err, ehr.ErrUnknownPatient):
			code = "unknown_patient"
		case errors.Is(err, ehr.ErrUnknownUser):
			code = "unknown_user"
		case errors.Is(err, ehr.ErrUnknownEncounter):
			code = "unknown_encounter"
		case errors.Is(err, ehr.ErrNoLaunchURL):
			code = "no_launch_url"
		default:
			a.logger.ErrorContext(r.Context(), "create launch", "err", err)
			apiError(w, http.StatusInternalServerError, "server_error", "the launch could not be created")
			return
		}
		apiError(w, http.StatusBadRequest, code, launchErrorText[code])
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"url": u})
}

func (a *controlAPI) traces(w http.ResponseWriter, r *http.Request) {
	// Only the flows asked for are copied (and redacted, the first time).
	var flows []trace.Flow
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	switch {
	case err != nil || n < 0:
		flows = a.r.Trace.Flows()
	case n == 0:
		flows = []trace.Flow{}
	default:
		flows = a.r.Trace.Recent(n)
	}
	writeJSON(w, http.StatusOK, map[string][]trace.Flow{"flows": flows})
}

func (a *controlAPI) traceByID(w http.ResponseWriter, r *http.Request) {
	f, ok := a.r.Trace.Flow(r.PathValue("id"))
	if !ok {
		apiError(w, http.StatusNotFound, "not_found", "no such flow")
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // URLs stay readable: & not \u0026
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// FaultsBody is the body of GET and PUT {api}/faults: the faults in force
// on the calls between sim's servers, by target (ehr_as, introspection,
// ehr_fhir). PUT replaces them all; DELETE clears them.
type FaultsBody map[FaultTarget]ServerFault

// faultView is one fault as GET and PUT {api}/faults write it, so that what
// GET answers can be PUT back.
type faultView struct {
	Down   bool   `json:"down,omitempty"`
	Delay  string `json:"delay,omitempty"`
	Status int    `json:"status,omitempty"`
}

func (a *controlAPI) getFaults(w http.ResponseWriter, r *http.Request) {
	out := map[FaultTarget]faultView{}
	for t, f := range a.r.Faults.Snapshot() {
		v := faultView{Down: f.Down, Status: f.Status}
		if f.Delay > 0 {
			v.Delay = f.Delay.String()
		}
		out[t] = v
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *controlAPI) putFaults(w http.ResponseWriter, r *http.Request) {
	var body map[FaultTarget]struct {
		Down   bool   `json:"down"`
		Delay  string `json:"delay"`
		Status int    `json:"status"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", `body must be a JSON object like {"ehr_as": {"down": true}, "introspection": {"status": 500}, "ehr_fhir": {"delay": "4s"}}: `+err.Error())
		return
	}
	next := FaultsBody{}
	for target, f := range body {
		sf := ServerFault{Down: f.Down, Status: f.Status}
		if f.Delay != "" {
			d, err := time.ParseDuration(f.Delay)
			if err != nil || d < 0 || d > time.Minute {
				apiError(w, http.StatusBadRequest, "invalid_request", "delay must be a duration from 0s to 1m, like 4s")
				return
			}
			sf.Delay = d
		}
		if sf.Status != 0 && (sf.Status < 400 || sf.Status > 599) {
			apiError(w, http.StatusBadRequest, "invalid_request", "status must be an HTTP error status from 400 to 599")
			return
		}
		next[target] = sf
	}
	if err := a.r.Faults.Replace(next); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	a.getFaults(w, r)
}

func (a *controlAPI) deleteFaults(w http.ResponseWriter, r *http.Request) {
	a.r.Faults.Clear()
	w.WriteHeader(http.StatusNoContent)
}

// ClockBody is the body of GET {api}/clock and of its POST answer.
type ClockBody struct {
	Now  time.Time `json:"now"`
	Skew string    `json:"skew"`
}

func (a *controlAPI) getClock(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, ClockBody{Now: a.r.Clock.Now(), Skew: a.r.Clock.Skew().String()})
}

// postClock skews every server's clock: {"advance": "6m"} moves it forward
// (negative durations move it back), {"reset": true} removes the skew.
func (a *controlAPI) postClock(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Advance string `json:"advance"`
		Reset   bool   `json:"reset"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || (body.Advance == "") == !body.Reset {
		apiError(w, http.StatusBadRequest, "invalid_request", `body must be {"advance": "<duration>"} or {"reset": true}`)
		return
	}
	if body.Reset {
		a.r.Clock.Reset()
	} else {
		d, err := time.ParseDuration(body.Advance)
		if err != nil || d > 365*24*time.Hour || d < -365*24*time.Hour {
			apiError(w, http.StatusBadRequest, "invalid_request", "advance must be a duration like 6m or -30s, within a year")
			return
		}
		a.r.Clock.Advance(d)
	}
	a.getClock(w, r)
}
