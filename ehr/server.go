package ehr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/sqlitedb"
	"github.com/smart-sim/sim/ui"
)

// Server is the EHR AS.
type Server struct {
	cfg       Config
	db        *sqlitedb.DB
	durable   authkit.Store // keys, clients, refresh tokens, revocations
	ephemeral *authkit.MemStore
	signer    *authkit.Signer
	clients   *authkit.Registry
	auth      *authkit.ClientAuthenticator
	pages     *ui.Templates

	revMu       sync.RWMutex
	revokedJTI  map[string]time.Time
	revokedFam  map[string]time.Time
	cacheMu     sync.RWMutex
	accessCache map[string]*cachedAccess

	consentMu sync.Mutex
	consents  map[string]string // user\x00client -> granted scopes (prompt=none)
}

// Introspection permission scope (see package doc).
const ScopeIntrospect = "introspect"

// RegistrationCeiling is the most a dynamically registered client may be
// granted (its registered scope is narrowed to this): identity, launch
// context, refresh, the launch-token, patient data, and read/search of
// what the user can see. Writes at user level and system/ scopes need a
// configured client.
const RegistrationCeiling = "openid fhirUser profile launch launch/patient launch/encounter launch-token offline_access online_access patient/*.cruds user/*.rs"

// Buckets.
const (
	bucketRefresh    = "refresh"
	bucketRevokedJTI = "revoked_jti"
	bucketRevokedFam = "revoked_family"
	bucketCode       = "code"
	bucketUsedCode   = "used_code"
	bucketLaunch     = "launch"
	bucketRequest    = "authz_request"
	bucketSession    = "session"
	bucketLTUsed     = "launch_token_used"
)

// New builds the server: opens storage, loads or creates signing keys, and
// registers the configured clients and partners.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("ehr config: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		ephemeral:   authkit.NewMemStore(cfg.Now),
		revokedJTI:  map[string]time.Time{},
		revokedFam:  map[string]time.Time{},
		accessCache: map[string]*cachedAccess{},
		consents:    map[string]string{},
	}
	if cfg.DataPath != "" {
		db, err := sqlitedb.Open(ctx, cfg.DataPath, authkit.Migrations())
		if err != nil {
			return nil, fmt.Errorf("open ehr auth store: %w", err)
		}
		s.db = db
		s.durable = &authkit.SQLStore{Write: db.Write, Read: db.Read, Now: cfg.Now}
	} else {
		s.durable = authkit.NewMemStore(cfg.Now)
	}
	if err := s.init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) init(ctx context.Context) error {
	var err error
	if s.pages, err = ui.Load(nil); err != nil {
		return err
	}
	if s.signer, err = authkit.NewSigner(ctx, s.durable, s.cfg.Now); err != nil {
		return err
	}
	if s.clients, err = authkit.NewRegistry(ctx, s.durable, s.cfg.Now); err != nil {
		return err
	}
	s.clients.Closed = s.cfg.Strict
	s.clients.OpenBackend = s.cfg.OpenBackendRegistration
	s.clients.ScopeCeiling = RegistrationCeiling
	s.auth = &authkit.ClientAuthenticator{
		Registry:   s.clients,
		Audiences:  []string{s.url("/token"), s.cfg.Issuer},
		HTTPClient: s.cfg.HTTPClient,
		Replay:     s.ephemeral,
		Now:        s.cfg.Now,
	}
	for _, c := range s.cfg.Clients {
		if _, err := s.clients.Put(ctx, c); err != nil {
			return fmt.Errorf("register client %s: %w", c.ID, err)
		}
	}
	for _, p := range s.cfg.Partners {
		c := authkit.Client{
			ID:           p.ClientID,
			AuthMethod:   authkit.AuthPrivateKeyJWT,
			GrantTypes:   []string{authkit.GrantClientCredentials},
			Scope:        "system/Patient.rs system/Practitioner.rs " + ScopeIntrospect,
			JWKS:         p.JWKS,
			JWKSURI:      p.JWKSURI,
			SoftwareID:   p.SoftwareID,
			Name:         "Partner " + p.Issuer,
			Introspector: true,
			Issuer:       p.Issuer,
		}
		if _, err := s.clients.Put(ctx, c); err != nil {
			return fmt.Errorf("register partner %s: %w", p.Issuer, err)
		}
	}
	for bucket, m := range map[string]map[string]time.Time{bucketRevokedJTI: s.revokedJTI, bucketRevokedFam: s.revokedFam} {
		items, err := s.durable.List(ctx, bucket)
		if err != nil {
			return fmt.Errorf("load revocations: %w", err)
		}
		for _, it := range items {
			m[it.Key] = it.Expires
		}
	}
	return nil
}

// Close releases the database.
func (s *Server) Close() error {
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

// Signer exposes the signing keys (rotation, tests).
func (s *Server) Signer() *authkit.Signer { return s.signer }

// RotateKeys makes a new signing key active; the old one stays published
// until every token it signed has expired.
func (s *Server) RotateKeys(ctx context.Context) error {
	l := s.cfg.Lifetimes
	keep := max(l.Access, l.LaunchToken, l.Backend, l.Refresh)
	return s.signer.Rotate(ctx, keep)
}

// Clients exposes the client registry (the control API lists apps).
func (s *Server) Clients() *authkit.Registry { return s.clients }

func (s *Server) url(path string) string { return s.cfg.Issuer + path }

// SecurityURIs are the OAuth endpoints for the CapabilityStatement's SMART
// security extension (http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris).
type SecurityURIs struct {
	Authorize, Token, Register, Manage, Introspect, Revoke string
}

// SecurityURIs returns the absolute endpoint URLs. Manage is empty: sim
// has no grant management page.
func (s *Server) SecurityURIs() SecurityURIs {
	return SecurityURIs{
		Authorize:  s.url("/authorize"),
		Token:      s.url("/token"),
		Register:   s.url("/register"),
		Introspect: s.url("/introspect"),
		Revoke:     s.url("/revoke"),
	}
}

// Mount registers the server's routes. The FHIR handler owns "/fhir/";
// the smart-configuration pattern here is more specific.
func (s *Server) Mount(mux *http.ServeMux) {
	base := pathOf(s.cfg.Issuer)
	fhir := pathOf(s.cfg.FHIRBase)
	mux.HandleFunc("GET "+fhir+"/.well-known/smart-configuration", s.handleSMARTConfig)
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", s.handleOIDCConfig)
	mux.HandleFunc(base+"/authorize", s.handleAuthorize)
	mux.HandleFunc(base+"/login", s.handleLogin)
	mux.HandleFunc(base+"/pick", s.handlePick)
	mux.HandleFunc(base+"/consent", s.handleConsent)
	mux.HandleFunc(base+"/token", s.handleToken)
	mux.HandleFunc(base+"/introspect", s.handleIntrospect)
	mux.HandleFunc(base+"/revoke", s.handleRevoke)
	mux.HandleFunc(base+"/register", s.clients.ServeRegister)
	mux.Handle("GET "+base+"/jwks", s.signer)
	mux.HandleFunc("GET "+base+"/smart-style.json", s.handleStyle)
	mux.Handle("GET "+base+"/static/", http.StripPrefix(base+"/static/", http.FileServerFS(ui.Static())))
	mux.HandleFunc("GET "+pathOf(s.cfg.Origin)+"/brands/bundle.json", s.handleBrands)
}

func pathOf(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return strings.TrimRight(rest[j:], "/")
	}
	return ""
}

func (s *Server) logError(ctx context.Context, msg string, err error) {
	s.cfg.Logger.ErrorContext(ctx, msg, "err", err)
}

func writeJSONCached(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(b)
}

func (s *Server) handleStyle(w http.ResponseWriter, r *http.Request) {
	writeJSONCached(w, map[string]any{
		"color_background":     "#f5f7fa",
		"color_error":          "#a40e26",
		"color_highlight":      "#0b5cad",
		"color_modal_backdrop": "",
		"color_success":        "#1a7f37",
		"color_text":           "#1b1f24",
		"dim_border_radius":    "8px",
		"dim_font_size":        "16px",
		"dim_spacing_size":     "16px",
		"font_family_body":     "system-ui, sans-serif",
		"font_family_heading":  "system-ui, sans-serif",
	})
}

var errNotOurs = errors.New("not issued here")
