package scenarios_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smart-sim/sim/internal/report"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// bundled loads every bundled scenario (the product's demos).
func bundled(t testing.TB) []*scenarios.Scenario {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []*scenarios.Scenario
	for _, f := range files {
		if f == scenarios.DefaultWorldFile {
			continue
		}
		sc, err := scenarios.LoadScenario(f)
		if err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
		out = append(out, sc)
	}
	if len(out) == 0 {
		t.Fatal("no bundled scenarios")
	}
	return out
}

// worldFor returns a running world for sc's world: the shared default
// world, or one started for that world's fingerprint and closed with the
// test.
func worldFor(t *testing.T, started map[string]*scenarios.Running, sc *scenarios.Scenario) scenarios.Ready {
	t.Helper()
	fp := sc.World.Fingerprint()
	if fp == scenarios.DefaultWorld().Fingerprint() {
		return sharedWorld(t).Ready()
	}
	if r, ok := started[fp]; ok {
		return r.Ready()
	}
	r, err := scenarios.Start(t.Context(), sc.World, scenarios.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	started[fp] = r
	return r.Ready()
}

func textReport(t testing.TB, results []report.Result, noTimings bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := report.Text(&b, results, report.Options{NoTimings: noTimings}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestBundledScenarios(t *testing.T) {
	started := map[string]*scenarios.Running{}
	begin := time.Now()
	flows := 0
	for _, sc := range bundled(t) {
		t.Run(sc.Name, func(t *testing.T) {
			ready := worldFor(t, started, sc)
			var traces []trace.Flow
			res, err := scenarios.Run(t.Context(), sc, scenarios.RunOptions{Target: &ready,
				OnFlow: func(_ int, _ *report.FlowResult, tf trace.Flow) { traces = append(traces, tf) }})
			if err != nil {
				t.Fatal(err)
			}
			flows += len(res.Flows)
			if !report.Passed([]report.Result{res}) {
				t.Fatalf("scenario failed:\n%s", textReport(t, []report.Result{res}, false))
			}
			if len(traces) != len(res.Flows) {
				t.Fatalf("%d traces for %d flows", len(traces), len(res.Flows))
			}
			for _, tf := range traces {
				if len(tf.Events) == 0 {
					t.Errorf("flow %s: no trace events recorded", tf.ID)
				}
			}
		})
	}
	t.Logf("bundled suite: %d flows in %s", flows, time.Since(begin).Round(time.Millisecond))
}

// TestFailingScenarios runs scenarios whose expectations are wrong on
// purpose and compares the text reports (timings masked) with golden files.
func TestFailingScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/run/failing/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no failing scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			sc, err := scenarios.LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			ready := sharedWorld(t).Ready()
			res, err := scenarios.Run(t.Context(), sc, scenarios.RunOptions{Target: &ready})
			if err != nil {
				t.Fatal(err)
			}
			if report.Passed([]report.Result{res}) {
				t.Fatal("a scenario with wrong expectations passed")
			}
			got := textReport(t, []report.Result{res}, true)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("report differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestRunDeterministic: the same scenario against the same world gives the
// same report and the same trace (timestamps, durations and secrets aside).
func TestRunDeterministic(t *testing.T) {
	sc, err := scenarios.LoadScenario("happy_path.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ready := sharedWorld(t).Ready()
	var runs [2]string
	for i := range runs {
		var labels []string
		res, err := scenarios.Run(t.Context(), sc, scenarios.RunOptions{Target: &ready,
			OnFlow: func(_ int, _ *report.FlowResult, tf trace.Flow) {
				labels = append(labels, tf.ID)
				for _, e := range tf.Events {
					labels = append(labels, string(e.From)+">"+string(e.To)+" "+e.Label+" "+e.Decision)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		runs[i] = textReport(t, []report.Result{res}, true) + strings.Join(labels, "\n")
	}
	if runs[0] != runs[1] {
		t.Fatalf("two runs differ:\n%s\n---\n%s", runs[0], runs[1])
	}
	if !strings.Contains(runs[0], "happy-path/1\n") {
		t.Fatalf("flow id is not deterministic: %s", runs[0])
	}
}

// TestRunStartsAndStopsItsOwnWorld runs without a target: the runner starts
// the scenario's world and closes it, leaving no listener behind.
func TestRunStartsAndStopsItsOwnWorld(t *testing.T) {
	sc := parse(t, "own.yaml", `
name: own world
world: {seed: 7}
flows:
  - name: shared
    steps:
      - ehr_launch: {app: sim-sample-app}
        expect: {present: [launch_token]}
      - other_launch: {}
        expect: {granted: [patient/*.rs], same_person: true}
      - read: {server: other, path: "Patient/{{other.patient}}"}
        expect: {status: 200, count: 1}
`)
	var ready []string
	runPassing(t, sc, scenarios.RunOptions{OnFlow: func(_ int, _ *report.FlowResult, tf trace.Flow) {
		for _, e := range tf.Events {
			if e.To == trace.EHRFHIR && e.URL != "" {
				ready = append(ready, e.URL)
			}
		}
	}}, 1)
	if len(ready) == 0 {
		t.Fatal("no EHR FHIR exchange recorded")
	}
	u := regexp.MustCompile(`^http://[^/]+`).FindString(ready[0])
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(u + "/fhir/metadata"); err == nil {
		resp.Body.Close()
		t.Fatalf("the world at %s still answers after Run", u)
	}
}

// TestRunRefusesAnotherWorld: a scenario with its own world cannot run
// against a target serving another.
func TestRunRefusesAnotherWorld(t *testing.T) {
	sc := parse(t, "other.yaml", `
world: {seed: 99}
flows:
  - steps:
      - ehr_launch: {}
`)
	ready := sharedWorld(t).Ready()
	_, err := scenarios.Run(t.Context(), sc, scenarios.RunOptions{Target: &ready})
	if err == nil || !strings.Contains(err.Error(), "seed 20250601, the scenario's 99") {
		t.Fatalf("err = %v, want a world mismatch naming the seeds", err)
	}
}

// TestFaultsAreUndone: after a flow with faults and clock skew (even one
// that fails), the world is healthy and on time.
func TestFaultsAreUndone(t *testing.T) {
	sc := parse(t, "faults.yaml", `
flows:
  - name: down and skewed
    faults:
      - down: ehr_fhir
      - clock_skew: servers
        by: 10m
      - fail: introspection
        during: other
    steps:
      - ehr_launch: {app: sim-sample-app}
      - other_launch: {}
        expect: {error: server_error}
`)
	r := sharedWorld(t)
	ready := r.Ready()
	if _, err := scenarios.Run(t.Context(), sc, scenarios.RunOptions{Target: &ready}); err != nil {
		t.Fatal(err)
	}
	if f := r.Faults.Snapshot(); len(f) != 0 {
		t.Fatalf("faults left in force: %v", f)
	}
	if s := r.Clock.Skew(); s != 0 {
		t.Fatalf("clock left skewed by %s", s)
	}
}

// BenchmarkRunHappyPath measures `sim run happy_path.yaml` cold: start the
// scenario's world, run its one flow, stop the world. Goal: ≤ 0.5 s.
func BenchmarkRunHappyPath(b *testing.B) {
	sc, err := scenarios.LoadScenario("happy_path.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := scenarios.Run(b.Context(), sc, scenarios.RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if !report.Passed([]report.Result{res}) {
			b.Fatal("happy path failed")
		}
	}
}

// BenchmarkBundledSuite measures every bundled scenario against warm
// worlds (one per world, as TestBundledScenarios runs them). Goal: ≤ 10 s.
func BenchmarkBundledSuite(b *testing.B) {
	scs := bundled(b)
	ready := shared.Ready()
	for b.Loop() {
		for _, sc := range scs {
			if _, err := scenarios.Run(b.Context(), sc, scenarios.RunOptions{Target: &ready}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// parse parses the scenario src named name.
func parse(t testing.TB, name, src string) *scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.ParseScenario(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// runPassing runs sc with opts and requires every expectation to hold
// over wantFlows flows.
func runPassing(t testing.TB, sc *scenarios.Scenario, opts scenarios.RunOptions, wantFlows int) report.Result {
	t.Helper()
	res, err := scenarios.Run(t.Context(), sc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !report.Passed([]report.Result{res}) {
		t.Fatalf("%s failed:\n%s", sc.Name, textReport(t, []report.Result{res}, false))
	}
	if len(res.Flows) != wantFlows {
		t.Fatalf("%d flows, want %d", len(res.Flows), wantFlows)
	}
	return res
}

// TestRunFeatures runs, in its own world, the steps and faults the bundled
// scenarios do not: a standalone EHR launch through the patient picker with
// an unticked scope, a narrower refresh, a failed login, a confidential
// app (client_secret_basic) whose code is replayed, launch-token replay and
// theft faults, clock skew, and Backend Services with private_key_jwt.
func TestRunFeatures(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: "test-key", Algorithm: "RS384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	src := `
name: features
apps:
  - client_id: backend-app
    name: Backend App
    software_id: https://example.org/apps/backend
    type: confidential-asymmetric
    jwks: ` + string(jwk) + `
    redirect_uris: ["{console}/backend/callback"]
    scope: system/Patient.rs
    register_at: ehr
  # The default apps register "launch", which the EHR AS does not take to
  # cover launch/patient: a standalone app registers launch/patient.
  - client_id: standalone-app
    name: Standalone App
    software_id: https://example.org/apps/standalone
    type: public
    redirect_uris: ["{console}/standalone/callback"]
    scope: launch/patient openid fhirUser offline_access patient/*.rs user/*.rs
    register_at: ehr
flows:
  - name: standalone at the EHR
    steps:
      - standalone_launch:
          server: ehr
          app: standalone-app
          user: {untick: [user/*.rs]}
        expect:
          granted: [patient/*.rs]
          refused: [user/*.rs]
          present: [refresh_token, id_token]
          fields: {patient: "{{patient.ehr_id}}"}
          same_person: true
      - refresh: {from: ehr, scope: "launch/patient patient/*.rs offline_access"}
        expect: {granted: [patient/*.rs], absent: [launch_token]}
      - read: {server: ehr, path: "Patient/{{refresh.patient}}", token: refresh}
        expect: {status: 200, count: 1}
  - name: wrong password
    steps:
      - standalone_launch: {server: ehr, user: {password: not-the-password}}
        expect: {error: login_failed}
  - name: confidential app, code replayed
    faults: [{code: replayed, during: ehr}]
    steps:
      - ehr_launch: {app: sim-vendor-app}
        expect: {error: invalid_grant, status: 400}
  - name: launch-token replayed
    faults: [{launch_token: replayed, during: other}]
    steps:
      - ehr_launch: {app: sim-sample-app}
      - other_launch: {}
        expect: {error: invalid_request}
  - name: launch-token stolen
    faults: [{launch_token: other_app, app: sim-vendor-app, during: other}]
    steps:
      - ehr_launch: {app: sim-sample-app}
      - other_launch: {}
        expect: {error: invalid_request}
  - name: clock skew
    faults: [{clock_skew: servers, by: 2m}]
    steps:
      - ehr_launch: {app: sim-sample-app}
      - other_launch: {scope: launch openid patient/*.rs}
        expect: {granted: [patient/*.rs], same_person: true}
  - name: backend services
    steps:
      - backend: {app: backend-app, scope: system/Patient.rs}
        expect: {granted: [system/Patient.rs], present: [access_token, expires_in]}
      - read: {server: ehr, path: "Patient?_count=2", token: backend}
        expect: {status: 200, count: 2}
`
	runPassing(t, parse(t, "features.yaml", src), scenarios.RunOptions{}, 7)
}

// TestRunDirectionsFeatures runs, in its own world, what the bundled
// direction scenarios do not: a token exchange by a confidential-asymmetric
// app (private_key_jwt), launch-token faults during a token exchange
// (replayed, stolen by another app, expired), and a resource OtherAS does
// not govern.
func TestRunDirectionsFeatures(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: "jwt-app-key", Algorithm: "RS384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	src := `
name: directions features
apps:
  - client_id: jwt-app
    name: JWT App
    software_id: https://example.org/apps/jwt
    type: confidential-asymmetric
    jwks: ` + string(jwk) + `
    redirect_uris: ["{console}/jwt/callback"]
    launch_url: "{console}/jwt/launch"
    scope: launch launch-token openid fhirUser patient/*.rs user/*.rs
    register_at: both
flows:
  - name: private_key_jwt exchange
    steps:
      - ehr_launch: {app: jwt-app, resource: [other]}
        expect: {present: [launch_token]}
      - name: exchange
        token_exchange: {scope: patient/*.rs user/*.rs}
        expect:
          granted: [patient/*.rs, user/*.rs]
          same_person: true
          fields: {issued_token_type: "urn:ietf:params:oauth:token-type:access_token"}
      - read: {server: other, path: "Patient/{{exchange.patient}}"}
        expect: {status: 200, count: 1}
  - name: exchange replayed
    faults: [{launch_token: replayed, during: exchange}]
    steps:
      - ehr_launch: {app: sim-vendor-app, resource: [other]}
      - name: exchange
        token_exchange: {scope: patient/*.rs}
        expect: {error: invalid_request}
  - name: exchange by another app
    faults: [{launch_token: other_app, app: jwt-app, during: exchange}]
    steps:
      - ehr_launch: {app: sim-vendor-app, resource: [other]}
      - name: exchange
        token_exchange: {scope: patient/*.rs}
        expect: {error: invalid_request}
  - name: exchange of an expired launch-token
    faults: [{launch_token: expired, during: exchange}]
    steps:
      - ehr_launch: {app: sim-vendor-app, resource: [other]}
      - name: exchange
        token_exchange: {scope: patient/*.rs}
        expect: {error: invalid_request}
  - name: exchange for the EHR server
    steps:
      - ehr_launch: {app: sim-vendor-app, resource: [other]}
      - token_exchange: {scope: patient/*.rs, resource: [ehr]}
        expect: {error: invalid_target}
`
	runPassing(t, parse(t, "directions.yaml", src), scenarios.RunOptions{}, 5)
}

// TestDirectionExpectationsCanFail: wrong expectations on a token
// exchange and a broker launch fail, each naming the expectation with the
// wanted and the actual value.
func TestDirectionExpectationsCanFail(t *testing.T) {
	sc := parse(t, "wrong.yaml", `
name: wrong directions
flows:
  - name: exchange
    patient: {class: absent}
    steps:
      - ehr_launch: {app: sim-vendor-app, scope: launch launch-token openid fhirUser patient/*.rs user/*.rs, resource: [other]}
      - token_exchange: {scope: patient/*.rs user/*.rs}
        expect:
          granted: [patient/*.rs]
          same_person: true
          fhir_context: [{type: Patient, role: urn:sim:launch-full-url}]
  - name: broker
    patient: {class: absent}
    steps:
      - broker_launch: {scope: launch openid fhirUser patient/*.rs user/*.rs}
        expect:
          additional_tokens:
            other:
              granted: [patient/*.rs]
              fields: {patient: "{{patient.ehr_id}}"}
              same_person: true
  - name: broker refused
    patient: {class: absent}
    steps:
      - broker_launch: {scope: launch patient/*.rs}
        expect:
          additional_tokens: {other: {granted: [patient/*.rs]}}
  - name: broker granted
    patient: {class: shared}
    steps:
      - broker_launch: {scope: launch patient/*.rs}
        expect:
          additional_tokens: {other: {error: access_denied}}
`)
	ready := sharedWorld(t).Ready()
	res, err := scenarios.Run(t.Context(), sc, scenarios.RunOptions{Target: &ready})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range res.Flows {
		if f.Passed || f.Error != "" {
			t.Errorf("flow %q: passed %v, error %q", f.Name, f.Passed, f.Error)
		}
		for _, s := range f.Steps {
			for _, fl := range s.Failures {
				got[f.Name] = append(got[f.Name], fl.Expectation+": want "+fl.Want+", got "+fl.Got)
			}
		}
	}
	for flow, wants := range map[string][]string{
		"exchange": {"granted: want patient/*.rs granted, got granted scope: user/*.rs", "same_person: want true, got false: no patient in context",
			"fhir_context[0]: want an entry {type: Patient, role: urn:sim:launch-full-url}, got no fhirContext"},
		"broker": {"additional_tokens.other.granted: want patient/*.rs granted, got granted scope: launch openid fhirUser user/*.rs",
			"additional_tokens.other.fields.patient: want ", "additional_tokens.other.same_person: want true, got false: no patient in context"},
		"broker refused": {"additional_tokens.other: want a token for http://", ", got access_denied"},
		"broker granted": {"additional_tokens.other.error: want access_denied, got a token (granted scope: launch patient/*.rs)"},
	} {
		all := strings.Join(got[flow], "\n")
		for _, w := range wants {
			if !strings.Contains(all, w) {
				t.Errorf("flow %q: no failure containing %q in:\n%s", flow, w, all)
			}
		}
	}
}
