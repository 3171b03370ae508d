package scenarios

// The runner: executes a loaded Scenario against a running world (its own,
// started for the run, or a `sim serve` named by a ready-file) with a
// scripted app (golang.org/x/oauth2, PKCE S256, state, RFC 9207 iss) and a
// scripted user (internal/browser over the real HTML forms). It talks to the
// world only over HTTP: the FHIR bases, the discovered authorization
// servers and the control API (world truth, EHR launches, faults, clock,
// traces), so the same code runs in-process and against a target.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/report"
	"github.com/smart-sim/sim/internal/trace"
)

// RunOptions say where and how a scenario runs.
type RunOptions struct {
	// Target is a running world (a parsed `sim serve` ready-file); nil
	// starts the scenario's own world on ephemeral ports for the run and
	// stops it afterwards.
	Target *Ready
	// Logger receives the servers' logs of an own world; nil discards.
	Logger *slog.Logger
	// OnFlow is called after each flow (or matrix cell) with its result and
	// its recorded trace (the events of this run only). n counts the runs
	// of this scenario from 1. It may set fr.Trace (the diagram files it
	// wrote).
	OnFlow func(n int, fr *report.FlowResult, tf trace.Flow)
	// Now is the clock for durations (default time.Now).
	Now func() time.Time
}

// ErrWorldMismatch: the scenario's world is not the target's.
var ErrWorldMismatch = errors.New("the target serves another world")

// Run executes every flow of sc (every matrix cell separately) and returns
// the report. Unmet expectations and flows that cannot run are in the
// result; the error is for a run that could not happen at all (the world
// could not start, the target is unreachable or serves another world: then
// errors.Is(err, ErrWorldMismatch)).
func Run(ctx context.Context, sc *Scenario, opt RunOptions) (report.Result, error) {
	res := report.Result{Scenario: sc.Name, File: sc.File, Flows: []report.FlowResult{}}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	target := opt.Target
	if target == nil {
		r, err := Start(ctx, sc.World, Options{Logger: opt.Logger})
		if err != nil {
			return res, fmt.Errorf("start the scenario's world: %w", err)
		}
		// Closed even when a flow fails or ctx ends: no servers, ports or
		// files are left behind.
		defer r.Close(context.WithoutCancel(ctx))
		rd := r.Ready()
		target = &rd
	}
	rn := &runner{sc: sc, ready: *target, now: opt.Now, api: &http.Client{Timeout: 30 * time.Second}}
	view, err := rn.fetchWorld(ctx)
	if err != nil {
		return res, err
	}
	if opt.Target != nil && worldGiven(sc) {
		if err := compareWorld(sc.World, view); err != nil {
			return res, err
		}
	}
	rn.view = view
	truth := truthOf(view)
	n := 0
	for fi := range sc.Flows {
		f := &sc.Flows[fi]
		cells, err := f.Cells(truth)
		if err != nil {
			n++
			fr := report.FlowResult{Name: f.Name, Steps: []report.StepResult{}, Error: err.Error()}
			if opt.OnFlow != nil {
				opt.OnFlow(n, &fr, trace.Flow{ID: rn.flowID(fi, -1), Name: fr.FlowName()})
			}
			res.Flows = append(res.Flows, fr)
			continue
		}
		for ci, c := range cells {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("run scenario: %w", err)
			}
			n++
			idx := -1
			if f.Patient.IsMatrix() {
				idx = ci
			}
			fr, tf := rn.runCell(ctx, f, rn.flowID(fi, idx), c)
			if opt.OnFlow != nil {
				opt.OnFlow(n, &fr, tf)
			}
			res.Flows = append(res.Flows, fr)
		}
	}
	return res, nil
}

// worldGiven reports whether the scenario changes the world it runs in.
func worldGiven(sc *Scenario) bool {
	return sc.WorldFile != "" || sc.Overrides.Given() || len(sc.Apps) > 0
}

// compareWorld checks that the target serves the scenario's world, by
// everything GET {api}/world tells: name, seed, patient counts per class,
// users and apps.
func compareWorld(w *World, v WorldView) error {
	if v.Fingerprint != "" && v.Fingerprint == w.Fingerprint() {
		return nil
	}
	var diffs []string
	if v.Name != w.Name() {
		diffs = append(diffs, fmt.Sprintf("organisations %q, the scenario's %q", v.Name, w.Name()))
	}
	if v.Seed != w.Seed {
		diffs = append(diffs, fmt.Sprintf("seed %d, the scenario's %d", v.Seed, w.Seed))
	}
	if v.Total != w.EHR.Patients {
		diffs = append(diffs, fmt.Sprintf("%d EHR patients, the scenario's %d", v.Total, w.EHR.Patients))
	} else if w.EHR.Patients >= 0 && w.EHR.Patients <= synth.MaxPatients {
		want := synth.ClassCounts(w.EHR.Patients, w.synthOverlap())
		for _, c := range synth.Classes {
			if v.Classes[c] != want[c] {
				diffs = append(diffs, fmt.Sprintf("%d %s patients, the scenario's %d", v.Classes[c], c, want[c]))
			}
		}
	}
	users := map[string]string{}
	for _, u := range v.Users {
		users[u.Username] = u.Password
	}
	for _, u := range w.Users.Clinicians {
		if pw, ok := users[u.Username]; !ok || pw != u.Password {
			diffs = append(diffs, fmt.Sprintf("no user %q as the scenario has it", u.Username))
		}
	}
	apps := map[string]AppView{}
	for _, a := range v.Apps {
		apps[a.ClientID] = a
	}
	for _, a := range w.Apps {
		got, ok := apps[a.ClientID]
		if !ok || got.Type != a.Type || got.Scope != a.Scope || got.SoftwareID != a.SoftwareID {
			diffs = append(diffs, fmt.Sprintf("no app %q as the scenario registers it", a.ClientID))
		}
	}
	if len(diffs) == 0 && v.Fingerprint != "" {
		diffs = append(diffs, "another world fingerprint (the world files differ in a key not listed here)")
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: it has %s (start it with the scenario's world, or run without --target)", ErrWorldMismatch, strings.Join(diffs, "; "))
}

// truthOf turns the world view back into the generator's truth, in order.
func truthOf(v WorldView) []synth.Truth {
	out := make([]synth.Truth, 0, len(v.Patients))
	for _, p := range v.Patients {
		t := synth.Truth{EHRID: p.EHRID, Class: p.Class, OtherRecords: p.OtherRecords, Drifted: p.Drifted}
		if p.OtherID != nil {
			t.OtherID = *p.OtherID
		}
		for _, id := range p.Identifiers {
			t.Identifiers = append(t.Identifiers, synth.Identifier{System: id.System, Value: id.Value})
		}
		out = append(out, t)
	}
	return out
}

// runner carries one scenario run.
type runner struct {
	sc    *Scenario
	ready Ready
	view  WorldView
	now   func() time.Time
	api   *http.Client
	// transport carries the app's and the user's requests (nil:
	// http.DefaultTransport).
	transport http.RoundTripper
}

// flowID is the deterministic trace flow id of a flow (1-based) and, for
// a matrix, its cell (1-based): "happy-path/1", "matrix-classes/1/3".
func (rn *runner) flowID(flow, cell int) string {
	id := slug(rn.sc.Name) + "/" + strconv.Itoa(flow+1)
	if cell >= 0 {
		id += "/" + strconv.Itoa(cell+1)
	}
	return id
}

// slug keeps a name to lower-case letters, digits and dashes (at most 64).
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	if b.Len() == 0 {
		return "scenario"
	}
	return b.String()
}

// fetchWorld reads the world's truth from the control API, every page.
func (rn *runner) fetchWorld(ctx context.Context) (WorldView, error) {
	var all WorldView
	for offset := 0; ; {
		var v WorldView
		status, err := rn.apiCall(ctx, http.MethodGet, "/world?limit=1000&offset="+strconv.Itoa(offset), nil, &v)
		if err != nil {
			return all, fmt.Errorf("read the world from %s/world: %w", rn.ready.API, err)
		}
		if status != http.StatusOK {
			return all, fmt.Errorf("read the world from %s/world: status %d", rn.ready.API, status)
		}
		if offset == 0 {
			all = v
		} else {
			all.Patients = append(all.Patients, v.Patients...)
		}
		offset += len(v.Patients)
		if len(v.Patients) == 0 || offset >= v.Total {
			return all, nil
		}
	}
}

// apiCall sends a JSON request to the control API and decodes the answer
// into out (when non-nil and the status is 2xx).
func (rn *runner) apiCall(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rn.ready.API+path, rd)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rn.api.Do(req)
	if err != nil {
		return 0, fmt.Errorf("call the control API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read the control API's answer: %w", err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode the control API's answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// fetchTrace returns the recorded flow (empty when nothing was recorded).
func (rn *runner) fetchTrace(ctx context.Context, id string) (trace.Flow, error) {
	var f trace.Flow
	status, err := rn.apiCall(ctx, http.MethodGet, "/traces/"+url.PathEscape(id), nil, &f)
	if err != nil {
		return f, err
	}
	if status == http.StatusNotFound {
		return trace.Flow{ID: id}, nil
	}
	if status != http.StatusOK {
		return f, fmt.Errorf("read trace: status %d", status)
	}
	return f, nil
}

// appView finds a registered app in the target's world.
func (rn *runner) appView(id string) (AppView, bool) {
	for _, a := range rn.view.Apps {
		if a.ClientID == id {
			return a, true
		}
	}
	return AppView{}, false
}

// worldApp finds an app of the scenario's world (secret, keys).
func (rn *runner) worldApp(id string) (WorldApp, bool) {
	for _, a := range rn.sc.World.Apps {
		if a.ClientID == id {
			return a, true
		}
	}
	return WorldApp{}, false
}

// userView finds a user of the target's world.
func (rn *runner) userView(name string) (UserView, bool) {
	for _, u := range rn.view.Users {
		if u.Username == name {
			return u, true
		}
	}
	return UserView{}, false
}

// fhirBase is the FHIR base of "ehr" or "other".
func (rn *runner) fhirBase(server string) string {
	if server == ServerOther {
		return rn.ready.OtherFHIR
	}
	return rn.ready.EHRFHIR
}

// faultsBody is the PUT {api}/faults form of a set of faults.
type faultJSON struct {
	Down   bool   `json:"down,omitempty"`
	Delay  string `json:"delay,omitempty"`
	Status int    `json:"status,omitempty"`
}

func faultsJSON(m map[FaultTarget]ServerFault) map[FaultTarget]faultJSON {
	out := make(map[FaultTarget]faultJSON, len(m))
	for t, f := range m {
		j := faultJSON{Down: f.Down, Status: f.Status}
		if f.Delay > 0 {
			j.Delay = f.Delay.String()
		}
		out[t] = j
	}
	return out
}

// faultSet is the server faults among fs (for one step, or the whole flow).
func faultSet(fs []Fault) map[FaultTarget]ServerFault {
	out := map[FaultTarget]ServerFault{}
	for _, f := range fs {
		switch f.Kind() {
		case "down":
			x := out[FaultTarget(f.Down)]
			x.Down = true
			out[FaultTarget(f.Down)] = x
		case "slow":
			x := out[FaultTarget(f.Slow)]
			x.Delay = f.Delay
			out[FaultTarget(f.Slow)] = x
		case "fail":
			x := out[FaultTarget(f.Fail)]
			x.Status = f.Status
			out[FaultTarget(f.Fail)] = x
		}
	}
	return out
}

// faultControl puts faults and clock skews in force through the control
// API and undoes them all.
type faultControl struct {
	rn       *runner
	before   map[FaultTarget]ServerFault // what was in force before the flow
	applied  bool
	skew     time.Duration // total clock skew applied
	flowWide map[FaultTarget]ServerFault
}

func (fc *faultControl) init(ctx context.Context) error {
	var snap map[FaultTarget]ServerFault
	status, err := fc.rn.apiCall(ctx, http.MethodGet, "/faults", nil, &snap)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("read faults: status %d", status)
	}
	fc.before = snap
	return nil
}

// set puts exactly the faults before the flow plus extra in force.
func (fc *faultControl) set(ctx context.Context, layers ...map[FaultTarget]ServerFault) error {
	next := map[FaultTarget]ServerFault{}
	for t, f := range fc.before {
		next[t] = f
	}
	for _, l := range layers {
		for t, f := range l {
			x := next[t]
			if f.Down {
				x.Down = true
			}
			if f.Delay > 0 {
				x.Delay = f.Delay
			}
			if f.Status != 0 {
				x.Status = f.Status
			}
			next[t] = x
		}
	}
	status, err := fc.rn.apiCall(ctx, http.MethodPut, "/faults", faultsJSON(next), nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("set faults: status %d", status)
	}
	fc.applied = true
	return nil
}

// advance skews the servers' clock by d.
func (fc *faultControl) advance(ctx context.Context, d time.Duration) error {
	if d == 0 {
		return nil
	}
	status, err := fc.rn.apiCall(ctx, http.MethodPost, "/clock", map[string]string{"advance": d.String()}, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("skew the clock: status %d", status)
	}
	fc.skew += d
	return nil
}

// undo restores the faults and the clock as they were before the flow.
func (fc *faultControl) undo(ctx context.Context) error {
	var errs []error
	if fc.applied {
		if len(fc.before) == 0 {
			status, err := fc.rn.apiCall(ctx, http.MethodDelete, "/faults", nil, nil)
			if err == nil && status != http.StatusNoContent && status != http.StatusOK {
				err = fmt.Errorf("clear faults: status %d", status)
			}
			errs = append(errs, err)
		} else {
			status, err := fc.rn.apiCall(ctx, http.MethodPut, "/faults", faultsJSON(fc.before), nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("restore faults: status %d", status)
			}
			errs = append(errs, err)
		}
		fc.applied = false
	}
	if fc.skew != 0 {
		s := fc.skew
		fc.skew = 0
		if err := fc.advance(ctx, -s); err != nil {
			errs = append(errs, err)
		}
		fc.skew = 0
	}
	return errors.Join(errs...)
}

// stepFaults are the faults of a flow that name step.
func stepFaults(f *Flow, step string) []Fault {
	var out []Fault
	for _, ft := range f.Faults {
		if ft.During == step {
			out = append(out, ft)
		}
	}
	return out
}

func hasFaultKind(fs []Fault, kind, value string) (Fault, bool) {
	i := slices.IndexFunc(fs, func(f Fault) bool {
		switch kind {
		case "launch_token":
			return f.LaunchToken == value
		case "code":
			return f.Code == value
		}
		return false
	})
	if i < 0 {
		return Fault{}, false
	}
	return fs[i], true
}
