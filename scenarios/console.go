package scenarios

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/fhirstore"
	"github.com/smart-sim/sim/internal/console"
	"github.com/smart-sim/sim/internal/report"
	"github.com/smart-sim/sim/internal/trace"
)

// consoleScenarios are the scenario files shipped with sim.
//
//go:embed *.yaml
var consoleScenarios embed.FS

// mountConsole serves the web console on the console origin (everything
// but /api/).
func (r *Running) mountConsole(mux *http.ServeMux) {
	c, err := console.New(r.consoleConfig())
	if err != nil {
		// The console's templates are embedded: this is a build defect,
		// and the control API keeps working without the console.
		r.logger.Error("start console", "err", err)
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "The console is unavailable.", http.StatusInternalServerError)
		})
		return
	}
	c.Mount(mux)
}

func (r *Running) consoleConfig() console.Config {
	w, ready := r.World, r.ready
	cfg := console.Config{
		Servers: console.Servers{
			EHRFHIR: ready.EHRFHIR, OtherFHIR: ready.OtherFHIR, EHRIssuer: ready.EHRIssuer, OtherIssuer: ready.OtherIssuer,
			Console: ready.Console, API: ready.API, Brands: ready.Brands,
		},
		EHRName: w.EHR.Name, OtherName: w.Other.Name, WorldName: w.Name(), Seed: w.Seed,
		Classes: r.Population.Classes, OtherOnly: len(r.Population.OtherOnly),
		MatchSystems: w.Match.IdentifierSystems, SharedSystem: w.SharedIdentifierSystem,
		EHRMRNSystem: w.EHR.MRNSystem, OtherMRNSystem: w.Other.MRNSystem,
		EHR: storeReader{r.ehrStore}, Other: storeReader{r.otherStore},
		Launcher:  launcher{r.ehrAS},
		Trace:     r.Trace,
		Scenarios: scenarioFiles(),
		Runner:    consoleRunner{r},
		Logger:    r.logger.With("server", "console"),
		Now:       r.Clock.Now,
		// The console registers apps like any developer would: injected
		// faults (between sim's servers) do not apply to it.
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
	}
	for _, u := range r.userViews() {
		cfg.Users = append(cfg.Users, console.User{Username: u.Username, Password: u.Password, FHIRUser: u.FHIRUser, Kind: u.Kind})
	}
	for _, a := range w.appViews(ready) {
		cfg.Apps = append(cfg.Apps, console.App{ClientID: a.ClientID, Name: a.Name, SoftwareID: a.SoftwareID, Type: a.Type,
			RedirectURIs: a.RedirectURIs, LaunchURL: a.LaunchURL, Scope: a.Scope, RegisteredAt: a.RegisteredAt})
	}
	for _, t := range r.Population.Truth {
		p := console.Patient{EHRID: t.EHRID, Class: t.Class, OtherID: t.OtherID, OtherRecords: t.OtherRecords, Drifted: t.Drifted}
		for _, id := range t.Identifiers {
			p.Identifiers = append(p.Identifiers, console.Identifier{System: id.System, Value: id.Value})
		}
		cfg.Patients = append(cfg.Patients, p)
	}
	return cfg
}

// storeReader adapts a FHIR store to the console's read-only view.
type storeReader struct{ st *fhirstore.Store }

var _ console.Store = storeReader{}

func (s storeReader) Read(ctx context.Context, typ, id string) (json.RawMessage, error) {
	return s.st.Read(ctx, typ, id)
}

func (s storeReader) Search(ctx context.Context, typ string, q url.Values) ([]json.RawMessage, error) {
	res, err := s.st.Search(ctx, typ, q)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(res.Entries))
	for _, e := range res.Entries {
		out = append(out, e.Resource)
	}
	return out, nil
}

// launcher adapts the EHR AS's launches to the console.
type launcher struct{ as *ehr.Server }

var _ console.Launcher = launcher{}

func (l launcher) NewLaunch(ctx context.Context, lr console.LaunchRequest) (string, error) {
	return l.as.NewLaunch(ctx, ehr.LaunchRequest{ClientID: lr.ClientID, LaunchURL: lr.LaunchURL, Patient: lr.Patient, User: lr.User, Encounter: lr.Encounter})
}

// scenarioFiles lists the bundled scenarios with their descriptions (the
// world file is not a scenario).
func scenarioFiles() []console.ScenarioFile {
	names, _ := fs.Glob(consoleScenarios, "*.yaml")
	var out []console.ScenarioFile
	for _, n := range names {
		if n == "default_world.yaml" {
			continue
		}
		data, err := consoleScenarios.ReadFile(n)
		if err != nil {
			continue
		}
		var head struct {
			Name        string `yaml:"name"`
			Description string `yaml:"description"`
		}
		_ = yaml.Unmarshal(data, &head) // the runner validates; the console only shows
		out = append(out, console.ScenarioFile{File: path.Base(n), Name: head.Name, Description: head.Description, Teaches: leadingComment(string(data))})
	}
	slices.SortFunc(out, func(a, b console.ScenarioFile) int { return strings.Compare(a.File, b.File) })
	return out
}

// leadingComment is the comment block a file opens with, without "# ".
func leadingComment(s string) string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "#") {
			break
		}
		lines = append(lines, strings.TrimSpace(strings.TrimPrefix(t, "#")))
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.Join(lines, " "), "Teaches:"))
}

// consoleRunner runs a bundled scenario from the console. A scenario on
// this world runs against the running servers, so its flows appear in the
// console's traces; one with a world of its own runs in that world, started
// and stopped for the run.
type consoleRunner struct{ r *Running }

func (c consoleRunner) Run(ctx context.Context, file string) (console.RunResult, error) {
	data, err := consoleScenarios.ReadFile(path.Base(file))
	if err != nil {
		return console.RunResult{}, fmt.Errorf("no bundled scenario %q", file)
	}
	sc, err := ParseScenario(path.Base(file), data)
	if err != nil {
		return console.RunResult{}, fmt.Errorf("load scenario %s: %w", file, err)
	}
	opt := RunOptions{Logger: c.r.logger}
	var flows []string
	if sc.World.Fingerprint() == c.r.fingerprint {
		ready := c.r.ready
		opt.Target = &ready
		opt.OnFlow = func(_ int, _ *report.FlowResult, tf trace.Flow) { flows = append(flows, tf.ID) }
	}
	res, err := Run(ctx, sc, opt)
	if err != nil {
		return console.RunResult{}, fmt.Errorf("run scenario %s: %w", file, err)
	}
	var text strings.Builder
	if err := report.Text(&text, []report.Result{res}, report.Options{}); err != nil {
		return console.RunResult{}, fmt.Errorf("write report: %w", err)
	}
	return console.RunResult{Passed: report.Passed([]report.Result{res}), Summary: text.String(), Flows: flows}, nil
}
