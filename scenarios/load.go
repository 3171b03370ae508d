package scenarios

// The load generator behind `sim load`: complete flows, each with a fresh
// scripted app and a fresh browser, driven by the runner's step code
// (x/oauth2 with PKCE, the real HTML forms, real HTTP) by C workers at
// once, against an own world or a running `sim serve`. It measures the
// flows' latency, the time per endpoint as the app and the user see it,
// and counts failures by kind.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smart-sim/sim/fhirstore/synth"
)

// A Direction is one kind of complete flow `sim load` can drive.
type Direction struct {
	// Name is what --direction takes.
	Name string `json:"name"`
	// Summary says what one flow does.
	Summary string `json:"summary"`
	// Wired is false for a direction sim does not simulate yet.
	Wired bool `json:"wired"`

	steps func(l *loadPlan) []Step
}

// The directions, in the order `sim load -h` lists them.
const (
	DirectionA               = "a"
	DirectionB               = "b"
	DirectionC               = "c"
	DirectionD               = "d"
	DirectionEHR             = "ehr"
	DirectionOtherStandalone = "other-standalone"
)

// Directions lists what --direction accepts and which are wired.
func Directions() []Direction {
	return []Direction{
		{Name: DirectionA, Wired: true, steps: stepsA,
			Summary: "EHR launch with launch-token, OtherAS launch with it, Patient read at both servers"},
		{Name: DirectionB, Wired: true, steps: stepsB,
			Summary: "EHR launch with launch-token (confidential app), RFC 8693 token exchange at OtherAS, Patient read at both servers"},
		{Name: DirectionC, Wired: true, steps: stepsC,
			Summary: "one EHR launch with a resource per server (a world whose Other server the EHR AS governs), the one token reads both servers"},
		{Name: DirectionD, Wired: true, steps: stepsD,
			Summary: "EHR launch through the authorization proxy (broker), a Patient read at each server with its own token from additional_tokens"},
		{Name: DirectionEHR, Wired: true, steps: stepsEHR,
			Summary: "EHR launch at the EHR AS alone, Patient read at the EHR"},
		{Name: DirectionOtherStandalone, Wired: true, steps: stepsOtherStandalone,
			Summary: "standalone launch at OtherAS (login, patient picker, consent), Patient read at Other"},
	}
}

// LookupDirection finds a direction by name (case-insensitive).
func LookupDirection(name string) (Direction, bool) {
	for _, d := range Directions() {
		if strings.EqualFold(d.Name, name) {
			return d, true
		}
	}
	return Direction{}, false
}

// LoadOptions say what `sim load` drives, where and how hard.
type LoadOptions struct {
	// Direction is a Directions name; "" is direction A.
	Direction string
	// Target is a running world; nil starts World on ephemeral ports.
	Target *Ready
	// World is the own world (nil: the default world); against a Target,
	// the world whose app secrets the scripted apps use.
	World *World
	// Flows stops after this many flows; Duration after this long. With
	// neither, 100 flows.
	Flows    int
	Duration time.Duration
	// Concurrency is the number of flows under way at once (default 1).
	Concurrency int
	// Rate, when set, starts flows on a schedule, this many a second (an
	// open loop): a flow's latency counts from when it was due, so a flow
	// that had to wait for one of the Concurrency workers counts its wait.
	// 0 starts the next flow as soon as a worker is free (a closed loop).
	Rate float64
	// Progress, when set, is called about every 100 ms and once at the end
	// with the flows done and failed so far.
	Progress func(p LoadProgress)
	// Logger receives the own world's server logs; nil discards.
	Logger *slog.Logger
	// Now is the clock for durations (default time.Now). The waits of a
	// Rate and of a Duration are real timers.
	Now func() time.Time
}

// LoadProgress is a snapshot of a load run under way.
type LoadProgress struct {
	Done, Failed int64
	Elapsed      time.Duration
	// Flows and Duration repeat the options (the goal of the run).
	Flows    int
	Duration time.Duration
}

// LoadReport is the outcome of a load run (`sim load --format json`).
type LoadReport struct {
	Direction   string `json:"direction"`
	Target      string `json:"target"`
	Concurrency int    `json:"concurrency"`
	// Rate is the flows offered a second (LoadOptions.Rate); 0 for a
	// closed loop.
	Rate      float64 `json:"rate,omitempty"`
	Flows     int     `json:"flows"`
	Failed    int     `json:"failed"`
	ElapsedS  float64 `json:"elapsed_s"`
	FlowsPerS float64 `json:"flows_per_s"`
	// LatencyMS is the latency of a complete flow (with a Rate, from
	// when it was due).
	LatencyMS Latency `json:"latency_ms"`
	// DueNotStarted, with a Rate, is the flows that were due before the
	// run ended but never began, because every worker was busy: their
	// latency is in no figure, so a run that fell behind its schedule
	// reports percentiles lower than the truth.
	DueNotStarted int `json:"due_not_started,omitempty"`
	// Errors counts failed flows by kind ("step: error").
	Errors map[string]int `json:"errors"`
	// Endpoints is the time per endpoint as the app and the user see it,
	// busiest first.
	Endpoints []EndpointStat `json:"endpoints"`
	// Memory is the resident memory of this process when it runs its own
	// world (the world and the load client together); nil against a
	// --target, or where the system does not tell.
	Memory *LoadMemory `json:"memory,omitempty"`
}

// LoadMemory is the process's resident set (RSS), sampled every second
// of the run: a run long enough to pass every lifetime should not grow
// in its second half.
type LoadMemory struct {
	StartMB float64 `json:"start_mb"` // the world started, before the first flow
	HalfMB  float64 `json:"half_mb"`  // halfway through the run
	EndMB   float64 `json:"end_mb"`
	PeakMB  float64 `json:"peak_mb"`
	// SamplesMB is one sample a second, from the start.
	SamplesMB []float64 `json:"samples_mb"`
}

// record adds a sample.
func (m *LoadMemory) record(mb float64) {
	m.SamplesMB = append(m.SamplesMB, mb)
	m.PeakMB = max(m.PeakMB, mb)
}

// finish fills the summary from the samples and a last reading.
func (m *LoadMemory) finish(endMB float64) {
	m.record(endMB)
	m.EndMB = endMB
	m.HalfMB = m.SamplesMB[len(m.SamplesMB)/2]
}

// residentMB reads this process's resident set from /proc/self/statm
// (Linux); false elsewhere.
func residentMB() (float64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return float64(pages*int64(os.Getpagesize())) / (1 << 20), true
}

// Latency is a distribution in milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// EndpointStat is the time spent at one endpoint.
type EndpointStat struct {
	// Endpoint is "METHOD origin path", ids replaced by {id}:
	// "GET ehr /fhir/Patient/{id}".
	Endpoint string  `json:"endpoint"`
	Count    int64   `json:"count"`
	TotalS   float64 `json:"total_s"`
	// LatencyMS is one request's latency.
	LatencyMS Latency `json:"latency_ms"`
}

// ErrLoadInput is an invalid load option (unknown or unwired direction,
// negative counts).
var ErrLoadInput = errors.New("invalid load options")

// Load drives complete flows and reports on them. Failed flows are in the
// report; the error is for a run that could not happen at all (bad
// options, the world could not start, the target is unreachable).
func Load(ctx context.Context, opt LoadOptions) (LoadReport, error) {
	return load(ctx, opt, nil)
}

// load is Load; afterFlow, when set, sees every flow that succeeded
// (tests keep its tokens). It runs on the worker's goroutine.
func load(ctx context.Context, opt LoadOptions, afterFlow func(*flowRun)) (LoadReport, error) {
	if opt.Direction == "" {
		opt.Direction = DirectionA
	}
	dir, ok := LookupDirection(opt.Direction)
	if !ok {
		names := []string{}
		for _, d := range Directions() {
			names = append(names, d.Name)
		}
		return LoadReport{}, fmt.Errorf("%w: unknown direction %q (expected one of %s)", ErrLoadInput, opt.Direction, strings.Join(names, ", "))
	}
	if !dir.Wired {
		return LoadReport{}, fmt.Errorf("%w: direction %q is not wired in sim load yet", ErrLoadInput, dir.Name)
	}
	if opt.Flows < 0 || opt.Duration < 0 || opt.Concurrency < 0 || opt.Rate < 0 || math.IsNaN(opt.Rate) || math.IsInf(opt.Rate, 0) {
		return LoadReport{}, fmt.Errorf("%w: flows, duration, concurrency and rate cannot be negative, and rate must be a number", ErrLoadInput)
	}
	if opt.Flows == 0 && opt.Duration == 0 {
		opt.Flows = 100
	}
	if opt.Concurrency == 0 {
		opt.Concurrency = 1
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	w := opt.World
	if w == nil {
		w = DefaultWorld()
	}
	rep := LoadReport{Direction: dir.Name, Target: "in-process", Concurrency: opt.Concurrency, Rate: opt.Rate, Errors: map[string]int{}, Endpoints: []EndpointStat{}}
	target := opt.Target
	if target == nil {
		if dir.Name == DirectionC && !w.OtherGovernedByEHR() {
			// Direction C needs the EHR AS to govern the Other server: the
			// own world is the same world, governed so.
			gw := *w
			gw.Other.GovernedBy = GovernedByEHR
			w = &gw
		}
		if err := directionFits(dir.Name, w.OtherGovernedByEHR(), "the world"); err != nil {
			return rep, err
		}
		r, err := Start(ctx, w, Options{Logger: opt.Logger})
		if err != nil {
			return rep, fmt.Errorf("start the world: %w", err)
		}
		defer r.Close(context.WithoutCancel(ctx))
		rd := r.Ready()
		target = &rd
		if mb, ok := residentMB(); ok {
			rep.Memory = &LoadMemory{StartMB: mb}
			rep.Memory.record(mb)
		}
	} else {
		rep.Target = target.API
		// A world whose Other server the EHR AS governs runs no OtherAS
		// (its ready information names no other_issuer).
		if err := directionFits(dir.Name, target.OtherIssuer == "", "the target's world"); err != nil {
			return rep, err
		}
	}

	// One pooled transport for every flow: connections are reused across
	// flows as a browser and an app library would reuse them, and enough
	// stay idle that C workers do not churn through ephemeral ports.
	base := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * opt.Concurrency,
		MaxIdleConnsPerHost: 2 * opt.Concurrency,
		IdleConnTimeout:     90 * time.Second,
	}
	defer base.CloseIdleConnections()
	origins := map[string]string{
		hostOf(target.EHRFHIR): "ehr", hostOf(target.OtherFHIR): "other", hostOf(target.API): "console",
	}
	if target.BrokerIssuer != "" {
		origins[hostOf(target.BrokerIssuer)] = "broker"
	}
	tt := &timingTransport{base: base, now: opt.Now, origins: origins}
	rn := &runner{sc: &Scenario{Name: "load", World: w}, ready: *target, now: opt.Now,
		api: &http.Client{Timeout: 30 * time.Second, Transport: tt}, transport: tt}
	view, err := rn.fetchWorld(ctx)
	if err != nil {
		return rep, err
	}
	rn.view = view
	plan, err := newLoadPlan(rn, w)
	if err != nil {
		return rep, err
	}
	plan.afterFlow = afterFlow
	flow := &Flow{Name: "load " + dir.Name, User: plan.user.Username, Steps: dir.steps(plan)}

	var (
		next, done, failed atomic.Int64
		mu                 sync.Mutex
		lat                = newHistogram()
		errs               = map[string]int{}
		wg                 sync.WaitGroup
	)
	start := opt.Now()
	runCtx := ctx
	if opt.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithCancel(ctx)
		t := time.AfterFunc(opt.Duration, cancel)
		defer t.Stop()
		defer cancel()
	}
	// When an interruption stopped the run, as time from its start;
	// interrupted is closed once it is set.
	var interruptedAt time.Duration
	interrupted := make(chan struct{})
	defer context.AfterFunc(ctx, func() {
		interruptedAt = opt.Now().Sub(start)
		close(interrupted)
	})()
	progress := func() {
		if opt.Progress != nil {
			opt.Progress(LoadProgress{Done: done.Load(), Failed: failed.Load(), Elapsed: opt.Now().Sub(start), Flows: opt.Flows, Duration: opt.Duration})
		}
	}
	stopTick := make(chan struct{})
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for ticks := 1; ; ticks++ {
			select {
			case <-stopTick:
				return
			case <-tk.C:
				progress()
				if rep.Memory != nil && ticks%10 == 0 {
					if mb, ok := residentMB(); ok {
						rep.Memory.record(mb)
					}
				}
			}
		}
	}()
	for range opt.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := newHistogram()
			localErrs := map[string]int{}
			for runCtx.Err() == nil {
				n := next.Add(1)
				if opt.Flows > 0 && n > int64(opt.Flows) {
					break
				}
				t0 := opt.Now()
				if opt.Rate > 0 {
					due := start.Add(dueAfter(n, opt.Rate))
					if !sleepFor(runCtx, due.Sub(t0)) {
						break
					}
					t0 = due
				}
				kind := plan.runOne(runCtx, flow, n)
				if kind != "" && runCtx.Err() != nil {
					// The run's time was up, or it was interrupted,
					// mid-flow: not a failure.
					break
				}
				local.record(opt.Now().Sub(t0))
				done.Add(1)
				if kind != "" {
					failed.Add(1)
					localErrs[kind]++
				}
			}
			mu.Lock()
			lat.merge(local)
			for k, v := range localErrs {
				errs[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stopTick)
	<-tickDone
	elapsed := opt.Now().Sub(start)
	progress()

	rep.Flows = int(done.Load())
	rep.Failed = int(failed.Load())
	rep.ElapsedS = elapsed.Seconds()
	if elapsed > 0 {
		rep.FlowsPerS = float64(rep.Flows) / elapsed.Seconds()
	}
	rep.LatencyMS = lat.latency()
	if opt.Rate > 0 {
		// The flows due by the end that no worker took up, because every
		// one was busy: a run that fell behind its schedule does not time
		// them, so say how many. (A flow taken up and waiting for its
		// time when the run ended was not behind.)
		end := elapsed
		if opt.Duration > 0 {
			end = min(end, opt.Duration)
		}
		if ctx.Err() != nil {
			<-interrupted
			end = min(end, interruptedAt)
		}
		// Flow n is due before the end when (n-1)/Rate < end.
		due := int64(math.Min(math.Ceil(end.Seconds()*opt.Rate), math.MaxInt32))
		if opt.Flows > 0 {
			due = min(due, int64(opt.Flows))
		}
		rep.DueNotStarted = int(max(0, due-next.Load()))
	}
	rep.Errors = errs
	rep.Endpoints = tt.stats()
	if rep.Memory != nil {
		mb, _ := residentMB()
		rep.Memory.finish(mb)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("load run interrupted: %w", err)
	}
	return rep, nil
}

// directionFits refuses a direction the world cannot run: C needs the EHR
// AS to govern the Other server; A, B, D and the standalone launch at
// OtherAS need OtherAS, which such a world does not run. what names the
// world in the error.
func directionFits(dir string, governed bool, what string) error {
	switch {
	case dir == DirectionC && !governed:
		return fmt.Errorf("%w: direction c needs a world whose Other server the EHR AS governs (other.governed_by: ehr); %s runs OtherAS", ErrLoadInput, what)
	case dir != DirectionC && dir != DirectionEHR && governed:
		return fmt.Errorf("%w: direction %s needs OtherAS, and %s has the EHR AS govern the Other server (other.governed_by: ehr)", ErrLoadInput, dir, what)
	}
	return nil
}

// loadPlan is what every flow of a run shares: the runner, the patients
// to launch for, the user and the apps.
type loadPlan struct {
	rn       *runner
	user     UserView
	patients []synth.Truth
	world    *World
	// afterFlow sees each flow that succeeded.
	afterFlow func(*flowRun)
}

// The apps the flows use (both in the default world; a --world must
// register them too).
const (
	loadPublicApp       = "sim-sample-app"
	loadConfidentialApp = "sim-vendor-app"
)

func newLoadPlan(rn *runner, w *World) (*loadPlan, error) {
	p := &loadPlan{rn: rn, world: w}
	for _, u := range rn.view.Users {
		if u.Kind == "" || u.Kind == synth.UserClinician {
			p.user = u
			break
		}
	}
	if p.user.Username == "" {
		return nil, fmt.Errorf("%w: the world has no clinician to sign in as", ErrLoadInput)
	}
	for _, t := range truthOf(rn.view) {
		if t.Class == synth.ClassShared && t.OtherID != "" {
			p.patients = append(p.patients, t)
		}
	}
	if len(p.patients) == 0 {
		return nil, fmt.Errorf("%w: the world has no shared patient (found at both servers) to launch for", ErrLoadInput)
	}
	return p, nil
}

func (p *loadPlan) userAction() UserAction {
	return UserAction{Login: p.user.Username, Password: p.user.Password, Decision: DecisionApprove}
}

func stepsA(p *loadPlan) []Step {
	return []Step{
		{Name: "ehr", EHRLaunch: &EHRLaunch{App: loadPublicApp, Resource: []string{ServerOther}, User: p.userAction(),
			Scope: "launch launch-token openid fhirUser offline_access patient/*.rs user/*.rs"}},
		// The user is known from the EHR's id_token: no second one (and no
		// third RSA signature per flow) at OtherAS.
		{Name: "other", OtherLaunch: &OtherLaunch{App: loadPublicApp, LaunchToken: "{{ehr.launch_token}}", User: p.userAction(),
			Scope: "launch patient/*.rs user/*.rs"}},
		{Name: "ehr-read", Read: &Read{Server: ServerEHR, Path: "Patient/{{ehr.patient}}", Token: "ehr"}},
		{Name: "other-read", Read: &Read{Server: ServerOther, Path: "Patient/{{other.patient}}", Token: "other"}},
	}
}

func stepsB(p *loadPlan) []Step {
	return []Step{
		{Name: "ehr", EHRLaunch: &EHRLaunch{App: loadConfidentialApp, Resource: []string{ServerOther}, User: p.userAction(),
			Scope: "launch launch-token openid fhirUser patient/*.rs user/*.rs"}},
		{Name: "other", TokenExchange: &TokenExchange{App: loadConfidentialApp, SubjectToken: "{{ehr.launch_token}}",
			SubjectTokenType: "urn:ietf:params:oauth:token-type:id_token", Scope: "launch/patient fhirUser patient/*.rs user/*.rs"}},
		{Name: "ehr-read", Read: &Read{Server: ServerEHR, Path: "Patient/{{ehr.patient}}", Token: "ehr"}},
		{Name: "other-read", Read: &Read{Server: ServerOther, Path: "Patient/{{other.patient}}", Token: "other"}},
	}
}

// stepsC is direction C: one EHR launch with an RFC 8707 resource per
// server; the one token reads the patient at both servers (at Other, the
// record the EHR AS matched, named in fhirContext).
func stepsC(p *loadPlan) []Step {
	return []Step{
		{Name: "ehr", EHRLaunch: &EHRLaunch{App: loadPublicApp, Resource: []string{ServerEHR, ServerOther}, User: p.userAction(),
			Scope: "launch openid fhirUser patient/*.rs user/*.rs"}},
		{Name: "ehr-read", Read: &Read{Server: ServerEHR, Path: "Patient/{{ehr.patient}}", Token: "ehr"}},
		{Name: "other-read", Read: &Read{Server: ServerOther, Path: "Patient/{{patient.other_id}}", Token: "ehr"}},
	}
}

// stepsD is direction D: one launch at the broker, which takes the user
// through both ASes and answers with a token per server.
func stepsD(p *loadPlan) []Step {
	return []Step{
		{Name: "broker", BrokerLaunch: &BrokerLaunch{App: loadPublicApp, Launch: BrokerLaunchEHR, User: p.userAction(),
			Scope: "launch openid fhirUser patient/*.rs user/*.rs"}},
		{Name: "ehr-read", Read: &Read{Server: ServerEHR, Path: "Patient/{{broker.patient}}", Token: "broker"}},
		{Name: "other-read", Read: &Read{Server: ServerOther, Path: "Patient/{{broker.other_patient}}", Token: "broker"}},
	}
}

func stepsEHR(p *loadPlan) []Step {
	return []Step{
		{Name: "ehr", EHRLaunch: &EHRLaunch{App: loadPublicApp, User: p.userAction(),
			Scope: "launch openid fhirUser offline_access patient/*.rs user/*.rs"}},
		{Name: "ehr-read", Read: &Read{Server: ServerEHR, Path: "Patient/{{ehr.patient}}", Token: "ehr"}},
	}
}

func stepsOtherStandalone(p *loadPlan) []Step {
	return []Step{
		{Name: "other", StandaloneLaunch: &StandaloneLaunch{Server: ServerOther, App: loadPublicApp, User: p.userAction(),
			Scope: "launch/patient openid fhirUser patient/*.rs user/*.rs"}},
		{Name: "other-read", Read: &Read{Server: ServerOther, Path: "Patient/{{other.patient}}", Token: "other"}},
	}
}

// runOne runs flow number n and returns "" or the kind of its failure.
func (p *loadPlan) runOne(ctx context.Context, f *Flow, n int64) string {
	c := Cell{Patient: p.patients[int(n-1)%len(p.patients)], HasPatient: true}
	fl := p.rn.newFlowRun(f, "load/"+strconv.FormatInt(n, 10), c)
	for i := range f.Steps {
		st := &f.Steps[i]
		out, err := fl.runStep(ctx, nil, st, nil)
		if err != nil {
			var re *runError
			if errors.As(err, &re) {
				return st.Name + ": cannot run"
			}
			return st.Name + ": " + errorKind(err)
		}
		if kind := loadJudge(fl, st, out); kind != "" {
			return st.Name + ": " + kind
		}
		fl.steps[st.Name] = out
	}
	if p.afterFlow != nil {
		p.afterFlow(fl)
	}
	return ""
}

// loadJudge says what is wrong with a step's outcome ("" for nothing): a
// grant must succeed with an access token (and the patient at both
// servers, and a launch-token when asked), a read must answer 200.
func loadJudge(fl *flowRun, st *Step, out *stepOut) string {
	if out.errCode != "" {
		return out.errCode
	}
	if st.Kind() == StepRead {
		if out.status != http.StatusOK {
			return "status " + strconv.Itoa(out.status)
		}
		return ""
	}
	if out.values["access_token"] == "" {
		return "no access_token"
	}
	if !fl.samePerson(out.server, out.values["patient"]) {
		return "wrong or no patient"
	}
	if st.EHRLaunch != nil && strings.Contains(st.EHRLaunch.Scope, "launch-token") && out.values["launch_token"] == "" {
		return "no launch_token"
	}
	if st.BrokerLaunch != nil {
		if e := out.values["other_error"]; e != "" {
			return "additional_token_errors " + e
		}
		if out.values["other_token"] == "" {
			return "no additional token for other"
		}
		if !fl.samePerson(ServerOther, out.values["other_patient"]) {
			return "wrong or no patient at other"
		}
	}
	return ""
}

// dueAfter is when flow n (from 1) is due after the start of a run at
// rate flows a second: the first at once. A time past what a Duration
// holds (a rate of a flow in centuries) is the longest it holds.
func dueAfter(n int64, rate float64) time.Duration {
	s := float64(n-1) / rate
	if s >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}

// sleepFor waits d (nothing when d <= 0); false if ctx ended first.
func sleepFor(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errorKind is a short, stable name for a transport or context error.
func errorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "unreachable"
}

func hostOf(u string) string {
	x, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return x.Host
}

// timingTransport times every request by endpoint.
type timingTransport struct {
	base    http.RoundTripper
	now     func() time.Time
	origins map[string]string // host -> ehr, other, console
	m       sync.Map          // endpoint -> *endpointHist
}

type endpointHist struct {
	mu sync.Mutex
	h  *histogram
}

func (t *timingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t0 := t.now()
	resp, err := t.base.RoundTrip(req)
	d := t.now().Sub(t0)
	key := t.endpoint(req)
	v, ok := t.m.Load(key)
	if !ok {
		v, _ = t.m.LoadOrStore(key, &endpointHist{h: newHistogram()})
	}
	e := v.(*endpointHist)
	e.mu.Lock()
	e.h.record(d)
	e.mu.Unlock()
	return resp, err
}

// endpoint names a request by method, origin and path, with ids (the
// segment after a FHIR resource type) replaced so that keys stay few.
func (t *timingTransport) endpoint(req *http.Request) string {
	org := t.origins[req.URL.Host]
	if org == "" {
		org = "elsewhere"
	}
	p := req.URL.Path
	if rest, ok := strings.CutPrefix(p, "/fhir/"); ok && !strings.HasPrefix(rest, ".well-known") {
		seg := strings.Split(rest, "/")
		if len(seg) >= 2 {
			seg[1] = "{id}"
		}
		if len(seg) > 4 {
			seg = seg[:4]
		}
		p = "/fhir/" + strings.Join(seg, "/")
	}
	if rest, ok := strings.CutPrefix(p, "/api/traces/"); ok && rest != "" {
		p = "/api/traces/{id}"
	}
	return req.Method + " " + org + " " + p
}

func (t *timingTransport) stats() []EndpointStat {
	out := []EndpointStat{}
	t.m.Range(func(k, v any) bool {
		e := v.(*endpointHist)
		e.mu.Lock()
		out = append(out, EndpointStat{Endpoint: k.(string), Count: e.h.n, TotalS: e.h.sum.Seconds(), LatencyMS: e.h.latency()})
		e.mu.Unlock()
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].TotalS != out[j].TotalS {
			return out[i].TotalS > out[j].TotalS
		}
		return out[i].Endpoint < out[j].Endpoint
	})
	return out
}

// histogram is a log-bucketed latency histogram: about 2% resolution from
// 1 µs to over a minute in a fixed few hundred counters, so a long run's
// memory stays flat.
type histogram struct {
	counts []int64
	n      int64
	sum    time.Duration
	max    time.Duration
}

const (
	histGrowth  = 1.02
	histBuckets = 920 // 1.02^920 µs ≈ 80 min
)

func newHistogram() *histogram { return &histogram{counts: make([]int64, histBuckets)} }

func histBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	b := int(math.Log(us)/math.Log(histGrowth)) + 1
	return min(b, histBuckets-1)
}

// histValue is the upper bound of bucket b.
func histValue(b int) time.Duration {
	if b == 0 {
		return time.Microsecond
	}
	return time.Duration(math.Pow(histGrowth, float64(b)) * float64(time.Microsecond))
}

func (h *histogram) record(d time.Duration) {
	h.counts[histBucket(d)]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile is the q-quantile (0 < q ≤ 1), never above the maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(histValue(b), h.max)
		}
	}
	return h.max
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000
}

func (h *histogram) latency() Latency {
	if h.n == 0 {
		return Latency{}
	}
	return Latency{
		Mean: ms(h.sum / time.Duration(h.n)),
		P50:  ms(h.quantile(0.50)), P95: ms(h.quantile(0.95)), P99: ms(h.quantile(0.99)),
		Max: ms(h.max),
	}
}

// SortedErrors returns the error kinds of a report, most frequent first.
func (r LoadReport) SortedErrors() []string {
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if r.Errors[a] != r.Errors[b] {
			return r.Errors[b] - r.Errors[a]
		}
		return strings.Compare(a, b)
	})
	return keys
}
