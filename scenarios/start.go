package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/fhirstore"
	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/broker"
	"github.com/smart-sim/sim/internal/httpkit"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/otheras"
)

// Options says where and how a world runs.
type Options struct {
	// Host is the address every origin listens on (default 127.0.0.1).
	Host string
	// Port is the EHR origin's port; Other gets Port+1, the console
	// Port+2 and the broker (direction D) Port+3. 0 picks each at random.
	Port int
	// DataDir keeps the stores across restarts; "" uses a temporary
	// directory removed by Close.
	DataDir string
	// Reset discards what DataDir holds before starting.
	Reset bool
	// Logger receives server logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock of every server (default time.Now).
	Now func() time.Time
}

// Ready is what `sim serve --ready-file` writes (contract.md): the base URLs
// of everything that listens.
type Ready struct {
	EHRFHIR     string `json:"ehr_fhir"`
	OtherFHIR   string `json:"other_fhir"`
	Console     string `json:"console"`
	API         string `json:"api"`
	EHRIssuer   string `json:"ehr_issuer"`
	OtherIssuer string `json:"other_issuer,omitempty"`
	Brands      string `json:"brands"`
	// BrokerIssuer is the authorization proxy of direction D (discovery at
	// {broker_issuer}/.well-known/smart-configuration); absent in a world
	// whose Other server is governed by the EHR.
	BrokerIssuer string `json:"broker_issuer,omitempty"`
	PID          int    `json:"pid"`
}

// Running is a started world. Close stops it.
type Running struct {
	World *World
	// Population is what was generated: the overlap truth and the users
	// (the resources themselves are in the stores).
	Population *synth.Summary
	Trace      *trace.Recorder
	// fingerprint identifies World; computed once at Start.
	fingerprint string
	// Clock is every server's clock; scenarios skew it.
	Clock *Clock
	// Faults break the calls between sim's servers on purpose.
	Faults *Faults

	ready      Ready
	logger     *slog.Logger
	ehrAS      *ehr.Server
	otherAS    *otheras.Server
	broker     *broker.Server
	ehrStore   *fhirstore.Store
	otherStore *fhirstore.Store
	tmpDir     string
	dataLock   *os.File // holds the lock on the data directory

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	serveErrs []error
	closeOnce sync.Once
	closeErr  error
}

// Ready returns the URLs of the running world.
func (r *Running) Ready() Ready { return r.ready }

// Start builds and serves a world: it listens first (so every server is
// built with its real URL), generates the directories, loads them into one
// SQLite store per FHIR server (or reuses the stores in DataDir), starts the
// authorization servers, and serves three origins until Close.
func Start(ctx context.Context, w *World, opt Options) (_ *Running, err error) {
	if opt.Host == "" {
		opt.Host = "127.0.0.1"
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	r := &Running{World: w, logger: opt.Logger, Clock: &Clock{base: opt.Now}, Faults: &Faults{}}
	opt.Now = r.Clock.Now
	r.fingerprint = w.Fingerprint()
	r.Trace = trace.NewRecorder(200, opt.Now)
	defer func() {
		if err != nil {
			r.Close(context.Background())
		}
	}()

	governed := w.OtherGovernedByEHR()
	n := 4
	if governed {
		n = 3 // no OtherAS, so no broker in front of it
	}
	lns, err := listen(opt.Host, opt.Port, n)
	if err != nil {
		return nil, err
	}
	ehrOrigin, otherOrigin, consoleOrigin := origin(lns[0]), origin(lns[1]), origin(lns[2])
	r.ready = Ready{
		EHRFHIR:     ehrOrigin + "/fhir",
		OtherFHIR:   otherOrigin + "/fhir",
		Console:     consoleOrigin,
		API:         consoleOrigin + "/api",
		EHRIssuer:   ehrOrigin + "/auth",
		OtherIssuer: otherOrigin + "/auth",
		Brands:      ehrOrigin + "/brands/bundle.json",
		PID:         os.Getpid(),
	}
	if governed {
		r.ready.OtherIssuer = ""
	} else {
		r.ready.BrokerIssuer = origin(lns[3]) + "/broker"
	}
	brokerSecret := authkit.RandomString(32)
	closeListeners := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}

	dataDir := opt.DataDir
	if dataDir == "" {
		if dataDir, err = r.makeTempDir(ctx); err != nil {
			closeListeners()
			return nil, err
		}
	} else if r.dataLock, err = prepareDataDir(dataDir, opt.Reset); err != nil {
		closeListeners()
		return nil, err
	}

	cfg := w.SynthConfig()
	// The directories are generated and loaded while the authorization
	// servers generate their keys: both take a few hundred milliseconds of
	// the start-up. The logins are known once the generation is over,
	// before any server serves.
	logins := newUsers(nil)
	loaded, err := r.openStores(ctx, dataDir, opt, cfg)
	if err != nil {
		closeListeners()
		return nil, err
	}
	defer func() {
		if err != nil {
			loaded() // the stores are closed only once the loads are over
		}
	}()

	// Servers reach each other over HTTP only, through a recorded client:
	// every exchange between two parties lands in the trace.
	r.Faults.ready = r.ready
	// Many launches run at once under load: keep enough idle connections
	// between the servers that none is dialled per call.
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	outbound := &http.Client{
		Timeout:   10 * time.Second,
		Transport: faultTransport{faults: r.Faults, base: base},
	}
	ehrCfg := ehr.Config{
		Issuer:   r.ready.EHRIssuer,
		FHIRBase: r.ready.EHRFHIR,
		Origin:   ehrOrigin,
		OrgName:  cfg.EHR.Name,
		Others: []ehr.Org{{
			Name:         cfg.Other.Name,
			FHIRBase:     r.ready.OtherFHIR,
			Capabilities: otheras.Capabilities,
		}},
		Users:          logins,
		Patients:       &patients{store: r.ehrStore, mrnSystem: cfg.EHR.MRNSystem},
		Clients:        w.clientsFor(RegisterAtEHR, r.ready),
		Lifetimes:      w.ehrLifetimes(),
		Strict:         w.Strict,
		DataPath:       filepath.Join(dataDir, "ehr-auth.db"),
		Now:            opt.Now,
		Logger:         opt.Logger.With("server", "ehr-as"),
		HTTPClient:     outbound,
		FrameAncestors: []string{consoleOrigin},
	}
	if governed {
		// Direction C: the EHR AS governs the Other FHIR server too.
		ehrCfg.Others[0].Capabilities = []string{ehr.CapabilityMultiAud}
		ehrCfg.Governed = []ehr.Governed{{
			Name: cfg.Other.Name, FHIRBase: r.ready.OtherFHIR,
			ResolvePatient: r.otherPatientResolver(w.Match.IdentifierSystems, w.Match.ConfirmDemographics),
		}}
	} else if err := r.startOtherAS(ctx, w, cfg.Other.Name, otherOrigin, dataDir, opt, outbound, &ehrCfg, brokerSecret, logins); err != nil {
		closeListeners()
		return nil, err
	}
	ehrAS, err := ehr.New(ctx, ehrCfg)
	if err != nil {
		closeListeners()
		return nil, fmt.Errorf("start EHR authorization server: %w", err)
	}
	r.ehrAS = ehrAS
	if err := loaded(); err != nil {
		closeListeners()
		return nil, err
	}
	logins.add(r.Population.Users)

	ehrSec := ehrAS.SecurityURIs()
	ehrSecurity := &fhirstore.SecurityURIs{
		Authorize: ehrSec.Authorize, Token: ehrSec.Token, Register: ehrSec.Register,
		Introspect: ehrSec.Introspect, Revoke: ehrSec.Revoke,
	}
	ehrMux := r.originMux(trace.EHRAS, trace.EHRFHIR, ehrAS.Mount, fhirstore.NewHandler(fhirstore.HandlerConfig{
		Store:    r.ehrStore,
		BaseURL:  r.ready.EHRFHIR,
		Verifier: accessVerifier(ehrAS.VerifyAccess),
		Security: ehrSecurity,
		Logger:   opt.Logger.With("server", "ehr-fhir"),
	}))
	var otherMux http.Handler
	if governed {
		// The Other FHIR server publishes the EHR AS's discovery and checks
		// EHR tokens whose aud names it.
		otherMux = r.originMux(trace.EHRAS, trace.OtherFHIR, func(mux *http.ServeMux) {
			mux.Handle("GET "+pathOf(r.ready.OtherFHIR)+"/.well-known/smart-configuration", ehrAS.GovernedDiscovery())
		}, fhirstore.NewHandler(fhirstore.HandlerConfig{
			Store:    r.otherStore,
			BaseURL:  r.ready.OtherFHIR,
			Verifier: accessVerifier(ehrAS.VerifyAccessAt(r.ready.OtherFHIR)),
			Security: ehrSecurity,
			Logger:   opt.Logger.With("server", "other-fhir"),
		}))
	} else {
		otherSec := r.otherAS.SecurityURIs()
		otherMux = r.originMux(trace.OtherAS, trace.OtherFHIR, r.otherAS.Mount, fhirstore.NewHandler(fhirstore.HandlerConfig{
			Store:    r.otherStore,
			BaseURL:  r.ready.OtherFHIR,
			Verifier: accessVerifier(r.otherAS.VerifyAccess),
			Security: &fhirstore.SecurityURIs{
				Authorize: otherSec.Authorize, Token: otherSec.Token, Register: otherSec.Register,
				Introspect: otherSec.Introspect, Revoke: otherSec.Revoke,
			},
			Logger: opt.Logger.With("server", "other-fhir"),
		}))
	}

	consoleMux := http.NewServeMux()
	(&controlAPI{r: r, logger: opt.Logger.With("server", "console")}).mount(consoleMux)
	r.mountConsole(consoleMux)

	origins := []struct {
		name string
		mux  http.Handler
	}{{"ehr", ehrMux}, {"other", otherMux}, {"console", consoleMux}}
	if !governed {
		brokerMux, err := r.startBroker(w, brokerSecret, outbound, opt)
		if err != nil {
			closeListeners()
			return nil, err
		}
		origins = append(origins, struct {
			name string
			mux  http.Handler
		}{"broker", brokerMux})
	}

	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	for i, h := range origins {
		handler := httpkit.CORS(httpkit.Wrap(h.name, opt.Logger, h.mux))
		ln := lns[i]
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := httpkit.Serve(serveCtx, ln, handler, opt.Logger, 5*time.Second); err != nil {
				r.mu.Lock()
				r.serveErrs = append(r.serveErrs, err)
				r.mu.Unlock()
			}
		}()
	}
	opt.Logger.InfoContext(ctx, "world started", "ehr_fhir", r.ready.EHRFHIR, "other_fhir", r.ready.OtherFHIR, "console", r.ready.Console)
	return r, nil
}

// listen opens n origins' listeners: port, port+1, ..., or n ephemeral
// ports when port is 0.
func listen(host string, port, n int) ([]net.Listener, error) {
	var lns []net.Listener
	for i := range n {
		p := 0
		if port != 0 {
			p = port + i
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen on %s port %d: %w", host, p, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// origin is the base URL of a listener. An unspecified address (0.0.0.0)
// is reached on the loopback address.
func origin(ln net.Listener) string {
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// The files a data directory holds.
var dataFiles = []string{"ehr-fhir.db", "other-fhir.db", "ehr-auth.db", "other-auth.db"}

// prepareDataDir creates dir, locks it for this process (the returned
// file holds the lock) and, with reset, empties it of sim's stores.
func prepareDataDir(dir string, reset bool) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	// A directory taken as --data is kept, whatever it was before.
	if err := os.Remove(filepath.Join(dir, tempMark)); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("unmark data directory: %w", err)
	}
	if !reset {
		return lock, nil
	}
	for _, f := range dataFiles {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(filepath.Join(dir, f+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				lock.Close()
				return nil, fmt.Errorf("reset data directory: %w", err)
			}
		}
	}
	return lock, nil
}

const (
	// tempDirPrefix starts the name of a temporary data directory.
	tempDirPrefix = "sim-"
	// tempMark is the file that marks a data directory as temporary: a
	// later sim may remove it once its sim has ended (see
	// removeStaleTempDirs). A --data directory never has it.
	tempMark = ".temporary"
)

// isTempDirName tells whether name is one os.MkdirTemp makes from
// tempDirPrefix+"*": the prefix and a random decimal number.
func isTempDirName(name string) bool {
	rest, ok := strings.CutPrefix(name, tempDirPrefix)
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// makeTempDir makes the temporary data directory of a world started
// without one, locks it and marks it temporary: a later sim removes it if
// this one ends without closing (kill -9), and only then. It first
// removes the ones such sims left behind.
func (r *Running) makeTempDir(ctx context.Context) (string, error) {
	removed, err := removeStaleTempDirs(os.TempDir(), time.Now())
	for _, dir := range removed {
		r.logger.InfoContext(ctx, "removed a temporary data directory left by a sim that did not close", "dir", dir)
	}
	if err != nil {
		r.logger.WarnContext(ctx, "stale temporary data directories", "err", err)
	}
	dir, err := os.MkdirTemp("", tempDirPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("create temporary data directory: %w", err)
	}
	if r.dataLock, err = lockDataDir(dir); err == nil {
		err = os.WriteFile(filepath.Join(dir, tempMark), nil, 0o600)
	}
	if err != nil {
		if r.dataLock != nil {
			r.dataLock.Close()
			r.dataLock = nil
		}
		os.RemoveAll(dir)
		return "", fmt.Errorf("prepare temporary data directory: %w", err)
	}
	r.tmpDir = dir
	return dir, nil
}

const fingerprintKey = "world_fingerprint"

// openStores opens the two FHIR stores and streams the generated
// directories into them (both sides at once), setting r.Population; loaded
// waits for the loads. A store that already holds this world gets only its
// Endpoints again (they carry the servers' addresses, which change between
// runs without --port); one that holds another world is an error: the data
// would not match the world's truth.
func (r *Running) openStores(ctx context.Context, dataDir string, opt Options, cfg synth.Config) (loaded func() error, err error) {
	sides := []struct {
		name, file, base string
		store            **fhirstore.Store
	}{
		{synth.SideEHR, "ehr-fhir.db", r.ready.EHRFHIR, &r.ehrStore},
		{synth.SideOther, "other-fhir.db", r.ready.OtherFHIR, &r.otherStore},
	}
	targets := map[string]*loadTarget{}
	for _, s := range sides {
		path := filepath.Join(dataDir, s.file)
		st, err := openFreshOrLoaded(ctx, fhirstore.Options{Path: path, Now: opt.Now, Logger: opt.Logger, BaseURL: s.base})
		if err == nil {
			*s.store = st
			var t *loadTarget
			if t, err = newLoadTarget(ctx, st, s.name, r.fingerprint, r.placeholders()); err == nil {
				targets[s.name] = t
				continue
			}
		} else {
			err = fmt.Errorf("open %s store: %w", s.name, err)
		}
		// Nothing was loaded: close what was opened.
		for _, o := range sides {
			if t := targets[o.name]; t != nil {
				t.loader.Close(ctx)
			}
			if *o.store != nil {
				(*o.store).Close()
				*o.store = nil
			}
		}
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		sum, err := synth.Stream(cfg, func(side string, batch []synth.Resource) error {
			return targets[side].add(ctx, batch)
		})
		if err != nil {
			err = fmt.Errorf("generate world: %w", err)
		}
		// The two stores end their loads at the same time: a first load
		// ends with sorting its index rows into place, which takes each
		// store a core for a while (BENCHMARKS.md, "Eleventh round").
		finished := make([]error, len(sides))
		var wg sync.WaitGroup
		for i, s := range sides {
			wg.Go(func() { finished[i] = targets[s.name].finish(ctx) })
		}
		wg.Wait()
		err = errors.Join(append([]error{err}, finished...)...)
		r.Population = sum
		done <- err
	}()
	var once sync.Once
	var result error
	return func() error {
		once.Do(func() { result = <-done })
		return result
	}, nil
}

// openFreshOrLoaded opens a FHIR store that is either new or fully loaded
// with a world (it carries the world's fingerprint). A store without a
// fingerprint was left by a start that stopped during its first load
// (which runs without fsync): it holds nothing but part of the generated
// world, since nothing is served before the fingerprint is written, so it
// is removed and made anew (a new store is empty: removing it is cheap).
func openFreshOrLoaded(ctx context.Context, opt fhirstore.Options) (*fhirstore.Store, error) {
	st, err := fhirstore.Open(ctx, opt)
	if err != nil {
		return nil, err
	}
	_, ok, err := st.Meta(ctx, fingerprintKey)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("read store %s: %w", opt.Path, err)
	}
	if ok {
		return st, nil
	}
	st.Close()
	for _, p := range []string{opt.Path, opt.Path + "-wal", opt.Path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove half-loaded store %s: %w", p, err)
		}
	}
	return fhirstore.Open(ctx, opt)
}

// loadTarget is one side's store taking the generated resources.
type loadTarget struct {
	store         *fhirstore.Store
	side, fp      string
	endpointsOnly bool // the store holds this world already
	loader        *fhirstore.Loader
	places        map[string]string
}

func newLoadTarget(ctx context.Context, st *fhirstore.Store, side, fp string, places map[string]string) (*loadTarget, error) {
	have, ok, err := st.Meta(ctx, fingerprintKey)
	if err != nil {
		return nil, fmt.Errorf("read %s store: %w", side, err)
	}
	if ok && have != fp {
		return nil, fmt.Errorf("the data directory holds another world (%s store fingerprint %s, this world %s): start with --reset to discard it, or use another --data directory", side, have, fp)
	}
	l, err := st.NewLoader(ctx, fhirstore.LoadOptions{Canonical: true})
	if err != nil {
		return nil, fmt.Errorf("load %s directory: %w", side, err)
	}
	return &loadTarget{store: st, side: side, fp: fp, endpointsOnly: ok, loader: l, places: places}, nil
}

// add loads a batch; Endpoints get the servers' real addresses.
func (t *loadTarget) add(ctx context.Context, batch []synth.Resource) error {
	for _, x := range batch {
		if t.endpointsOnly && x.Type != "Endpoint" {
			continue
		}
		body := x.JSON
		if x.Type == "Endpoint" {
			for from, to := range t.places {
				body = bytes.ReplaceAll(body, []byte(`"`+from), []byte(`"`+to))
			}
		}
		if err := t.loader.Add(ctx, body); err != nil {
			return fmt.Errorf("load %s directory: %w", t.side, err)
		}
	}
	return nil
}

// finish ends the load and records the world's fingerprint in a store
// loaded for the first time.
func (t *loadTarget) finish(ctx context.Context) error {
	if err := t.loader.Close(ctx); err != nil {
		return fmt.Errorf("load %s directory: %w", t.side, err)
	}
	if !t.endpointsOnly {
		if err := t.store.SetMeta(ctx, fingerprintKey, t.fp); err != nil {
			return fmt.Errorf("record %s world fingerprint: %w", t.side, err)
		}
	}
	return nil
}

// placeholders maps the generator's stand-in server addresses to the real
// ones, known only now that the servers listen.
func (r *Running) placeholders() map[string]string {
	return map[string]string{
		"https://ehr.sim.invalid/fhir":   r.ready.EHRFHIR,
		"https://other.sim.invalid/fhir": r.ready.OtherFHIR,
		"https://other.sim.invalid":      originOf(r.ready.OtherFHIR),
		"https://ehr.sim.invalid":        originOf(r.ready.EHRFHIR),
	}
}

func originOf(fhirBase string) string { return fhirBase[:len(fhirBase)-len("/fhir")] }

// Close stops the servers (letting in-flight requests finish), closes the
// stores and removes the temporary data directory. It is safe to call more
// than once.
func (r *Running) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
		errs := append([]error(nil), r.serveErrs...)
		if r.ehrAS != nil {
			errs = append(errs, r.ehrAS.Close())
		}
		if r.otherAS != nil {
			errs = append(errs, r.otherAS.Close())
		}
		for _, st := range []*fhirstore.Store{r.ehrStore, r.otherStore} {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
		if r.tmpDir != "" {
			errs = append(errs, os.RemoveAll(r.tmpDir))
		}
		if r.dataLock != nil {
			errs = append(errs, r.dataLock.Close())
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// DemoLogins are the world's users, for the start-up banner.
func (r *Running) DemoLogins() []UserView { return r.userViews() }

func (r *Running) userViews() []UserView {
	out := make([]UserView, 0, len(r.Population.Users))
	for _, u := range r.Population.Users {
		out = append(out, UserView{Username: u.Username, Password: u.Password, FHIRUser: r.ready.EHRFHIR + "/" + u.FHIRUser, Kind: u.Kind})
	}
	return out
}

func (r *Running) worldView(offset, limit int) WorldView {
	truth := r.Population.Truth
	v := WorldView{
		Name: r.World.Name(), Seed: r.World.Seed, Fingerprint: r.fingerprint, Servers: r.ready, Users: r.userViews(),
		Total: len(truth), Offset: offset, Limit: limit, Classes: r.Population.Classes,
		Apps: r.World.appViews(r.ready),
	}
	end := min(len(truth), offset+limit)
	for i := min(offset, end); i < end; i++ {
		t := truth[i]
		p := PatientView{EHRID: t.EHRID, Class: t.Class, OtherRecords: t.OtherRecords, Drifted: t.Drifted}
		if p.OtherRecords == nil {
			p.OtherRecords = []string{}
		}
		if t.OtherID != "" {
			id := t.OtherID
			p.OtherID = &id
		}
		for _, id := range t.Identifiers {
			p.Identifiers = append(p.Identifiers, IdentifierView{System: id.System, Value: id.Value})
		}
		v.Patients = append(v.Patients, p)
	}
	if v.Patients == nil {
		v.Patients = []PatientView{}
	}
	return v
}

// partnerClientID is OtherAS's Backend Services client at the EHR AS.
const partnerClientID = "otheras"

// originMux routes one organisation's origin: its authorization server
// (mounted by mount), its FHIR server under /fhir/, and the brand bundle.
// Each part is recorded in the trace as its own party.
func (r *Running) originMux(as, fhir trace.Party, mount func(*http.ServeMux), fhirHandler http.Handler) http.Handler {
	asMux := http.NewServeMux()
	mount(asMux)
	asRec := r.Trace.Middleware(as, caller, asMux)
	mux := http.NewServeMux()
	mux.Handle("/fhir/", r.Trace.Middleware(fhir, caller, fhirHandler))
	mux.Handle("/fhir/.well-known/", asRec)
	mux.Handle("/auth/", asRec)
	mux.Handle("/brands/", r.Trace.Middleware(trace.Brands, caller, asMux))
	return mux
}

// caller tells the party behind an inbound request: the user's browser for
// the pages of an authorization (authorize, login, picker, consent), the app
// for everything else. Calls between sim's own servers are recorded by the
// sender and never reach this.
func caller(r *http.Request) trace.Party {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/auth/") {
		return trace.App
	}
	switch path.Base(p) {
	case "token", "introspect", "revoke", "register", "jwks", "client-jwks", "openid-configuration", "smart-style.json":
		return trace.App
	}
	return trace.User
}
