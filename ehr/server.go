package ehr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

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
	ltUsed    *authkit.Marks // launch-tokens consumed, until they expire
	signer    *authkit.Signer
	clients   *authkit.Registry
	auth      *authkit.ClientAuthenticator
	page      authkit.Pages // sign-in, picker, consent and error pages

	sessions    *authkit.Sessions
	requests    *authkit.PendingRequests
	codes       *authkit.Codes
	revocations *authkit.Revocations
	refresh     *authkit.RefreshFamilies
	token       *authkit.TokenEndpoint
	cacheMu     sync.RWMutex
	accessCache map[string]*cachedAccess

	consentMu sync.Mutex
	consents  map[string]string // user\x00client -> granted scopes (prompt=none)

	// Discovery documents, built from the configuration once.
	smartDoc, oidcDoc, styleDoc authkit.StaticJSON
}

// Introspection permission scope (see package doc).
const ScopeIntrospect = "introspect"

// RegistrationCeiling is the most a dynamically registered client may be
// granted (its registered scope is narrowed to this): identity, launch
// context, refresh, the launch-token, patient data, and read/search of
// what the user can see. Writes at user level and system/ scopes need a
// configured client.
const RegistrationCeiling = "openid fhirUser profile launch launch/patient launch/encounter launch-token offline_access online_access patient/*.cruds user/*.rs"

// Buckets of the EHR's own (authkit keeps codes, sessions, requests,
// refresh tokens and revocations).
const (
	bucketLaunch = "launch"
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
		ltUsed:      authkit.NewMarks(cfg.Now),
		accessCache: map[string]*cachedAccess{},
		consents:    map[string]string{},
	}
	s.ephemeral.Limit(authkit.SessionBucket, authkit.MaxSessions)
	db, durable, err := authkit.OpenStore(ctx, cfg.DataPath, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("open ehr auth store: %w", err)
	}
	s.db, s.durable = db, durable
	if err := s.init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) init(ctx context.Context) error {
	var err error
	if s.page, err = authkit.LoadPages(s.cfg.ProductName, s.url("/static"), s.cfg.FrameAncestors, s.cfg.Logger); err != nil {
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
	s.wire()
	return s.revocations.Load(ctx)
}

// wire builds the shared OAuth mechanisms (authkit) over this server's
// stores, lifetimes and grants.
func (s *Server) wire() {
	l, now := s.cfg.Lifetimes, s.cfg.Now
	s.sessions = &authkit.Sessions{Store: s.ephemeral, Cookie: s.cfg.CookiePrefix + "_session", Issuer: s.cfg.Issuer, Life: l.Session, BindLife: l.Request, Now: now}
	s.requests = &authkit.PendingRequests{Store: s.ephemeral, Sessions: s.sessions}
	s.codes = authkit.NewCodes(s.ephemeral, l.Code, now)
	s.revocations = &authkit.Revocations{Store: s.durable, FamilyTTL: max(l.Refresh, l.Access), Now: now, Logger: s.cfg.Logger}
	s.refresh = &authkit.RefreshFamilies{Store: s.durable, Revocations: s.revocations, Life: l.Refresh, Now: now}
	s.token = &authkit.TokenEndpoint{Auth: s.auth, Logger: s.cfg.Logger, Grants: map[string]authkit.Grant{
		authkit.GrantAuthorizationCode: authkit.GrantOf(s.grantCode),
		authkit.GrantRefreshToken:      authkit.GrantOf(s.grantRefresh),
		authkit.GrantClientCredentials: authkit.GrantOf(s.grantClientCredentials),
	}}
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
// security extension.
type SecurityURIs = authkit.SecurityURIs

// SecurityURIs returns the absolute endpoint URLs. Manage is empty: sim
// has no grant management page.
func (s *Server) SecurityURIs() SecurityURIs { return authkit.EndpointsOf(s.cfg.Issuer) }

// Mount registers the server's routes. The FHIR handler owns "/fhir/";
// the smart-configuration pattern here is more specific.
func (s *Server) Mount(mux *http.ServeMux) {
	base := authkit.PathOf(s.cfg.Issuer)
	fhir := authkit.PathOf(s.cfg.FHIRBase)
	mux.HandleFunc("GET "+fhir+"/.well-known/smart-configuration", s.handleSMARTConfig)
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", s.handleOIDCConfig)
	mux.HandleFunc(base+"/authorize", s.handleAuthorize)
	mux.HandleFunc(base+"/login", s.handleLogin)
	mux.HandleFunc(base+"/pick", s.handlePick)
	mux.HandleFunc(base+"/consent", s.handleConsent)
	mux.Handle(base+"/token", s.token)
	mux.HandleFunc(base+"/introspect", s.handleIntrospect)
	mux.HandleFunc(base+"/revoke", s.handleRevoke)
	mux.HandleFunc(base+"/register", s.clients.ServeRegister)
	mux.Handle("GET "+base+"/jwks", s.signer)
	mux.HandleFunc("GET "+base+"/smart-style.json", s.handleStyle)
	mux.Handle("GET "+base+"/static/", http.StripPrefix(base+"/static/", http.FileServerFS(ui.Static())))
	mux.HandleFunc("GET "+authkit.PathOf(s.cfg.Origin)+"/brands/bundle.json", s.handleBrands)
}

func (s *Server) logError(ctx context.Context, msg string, err error) {
	s.cfg.Logger.ErrorContext(ctx, msg, "err", err)
}

func (s *Server) handleStyle(w http.ResponseWriter, r *http.Request) {
	authkit.WriteJSONCached(w, map[string]any{
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
