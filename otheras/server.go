package otheras

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/sqlitedb"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/ui"
)

// Server is the OtherAS.
type Server struct {
	cfg        Config
	db         *sqlitedb.DB
	durable    authkit.Store // keys, clients, refresh tokens, revocations
	ephemeral  *authkit.MemStore
	ltUsed     *authkit.Marks  // launch-tokens used here, until they expire
	signer     *authkit.Signer // access and id tokens
	clientKeys *authkit.Signer // client assertions to EHR ASes
	clients    *authkit.Registry
	auth       *authkit.ClientAuthenticator
	page       authkit.Pages         // sign-in, picker, consent and error pages
	ehrs       map[string]*ehrClient // by issuer

	sessions    *authkit.Sessions
	requests    *authkit.PendingRequests
	codes       *authkit.Codes
	revocations *authkit.Revocations
	refresh     *authkit.RefreshFamilies
	token       *authkit.TokenEndpoint

	// Discovery documents, built from the configuration once.
	smartDoc, oidcDoc authkit.StaticJSON
}

// RegistrationCeiling is the most a dynamically registered client may be
// granted (its registered scope is narrowed to this). Dynamic registration
// never creates Backend Services clients (authkit.Registry.OpenBackend).
const RegistrationCeiling = "openid fhirUser profile launch launch/patient offline_access online_access patient/*.cruds user/*.rs"

// bucketLTUsed holds consumed launch-tokens (authkit keeps codes,
// sessions, requests, refresh tokens and revocations).

// prefixStore keeps a second signer's keys apart in the same Store.
type prefixStore struct {
	authkit.Store
	prefix string
}

func (p prefixStore) Put(ctx context.Context, b, k string, v []byte, e time.Time) error {
	return p.Store.Put(ctx, p.prefix+b, k, v, e)
}
func (p prefixStore) List(ctx context.Context, b string) ([]authkit.Item, error) {
	return p.Store.List(ctx, p.prefix+b)
}

// New builds the server: opens storage, loads or creates signing keys and
// registers the configured clients.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("otheras config: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		ephemeral: authkit.NewMemStore(cfg.Now),
		ltUsed:    authkit.NewMarks(cfg.Now),
		ehrs:      map[string]*ehrClient{},
	}
	s.ephemeral.Limit(authkit.SessionBucket, authkit.MaxSessions)
	db, durable, err := authkit.OpenStore(ctx, cfg.DataPath, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("open otheras auth store: %w", err)
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
	if s.clientKeys, err = authkit.NewSigner(ctx, prefixStore{s.durable, "client_"}, s.cfg.Now); err != nil {
		return err
	}
	if s.clients, err = authkit.NewRegistry(ctx, s.durable, s.cfg.Now); err != nil {
		return err
	}
	s.clients.Closed = s.cfg.Strict
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
	for _, t := range s.cfg.TrustedIssuers {
		s.ehrs[t.Issuer] = &ehrClient{cfg: t, s: s}
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
	// RFC 8693 §2.1 and RFC 8707 allow several resource and audience
	// parameters; only token exchange reads them.
	s.token = &authkit.TokenEndpoint{Auth: s.auth, Logger: s.cfg.Logger, Repeatable: []string{"resource", "audience"}, Grants: map[string]authkit.Grant{
		authkit.GrantAuthorizationCode: authkit.GrantOf(s.grantCode),
		authkit.GrantRefreshToken:      authkit.GrantOf(s.grantRefresh),
		GrantTokenExchange:             authkit.GrantOf(s.grantExchange),
	}}
}

// Close releases the database.
func (s *Server) Close() error {
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

// Clients exposes the client registry (the control API lists apps).
func (s *Server) Clients() *authkit.Registry { return s.clients }

// PublicJWKS is the public key set OtherAS signs its client assertions
// with: register it at each trusted EHR AS (ehr.Partner.JWKS), or use
// {issuer}/client-jwks as the partner's jwks_uri.
func (s *Server) PublicJWKS() json.RawMessage {
	return json.RawMessage(s.clientKeys.JWKSJSON())
}

func (s *Server) url(path string) string { return s.cfg.Issuer + path }

// SecurityURIs are the OAuth endpoints for the CapabilityStatement's SMART
// security extension of the Other FHIR server.
type SecurityURIs = authkit.SecurityURIs

// SecurityURIs returns the absolute endpoint URLs (Manage is empty).
func (s *Server) SecurityURIs() SecurityURIs { return authkit.EndpointsOf(s.cfg.Issuer) }

// Mount registers the server's routes; the FHIR handler owns "/fhir/".
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
	mux.Handle("GET "+base+"/client-jwks", s.clientKeys)
	mux.HandleFunc("GET "+base+"/smart-style.json", s.handleStyle)
	mux.Handle("GET "+base+"/static/", http.StripPrefix(base+"/static/", http.FileServerFS(ui.Static())))
}

func (s *Server) logError(ctx context.Context, msg string, err error) {
	s.cfg.Logger.ErrorContext(ctx, msg, "err", err)
}

// decide records a decision of OtherAS in flow.
func (s *Server) decide(flow, label, decision string, refusal bool) {
	s.cfg.Trace.Add(trace.Event{Flow: flow, Kind: trace.KindDecision, From: trace.OtherAS, To: trace.OtherAS, Label: label, Decision: decision, Error: refusal})
}

// Capabilities OtherAS advertises (SMART App Launch 2.2 plus the draft's
// launch-token: it accepts them as launch; and the draft's token-exchange
// capabilities: RFC 8693 with an id_token, an EHR access token or a
// launch-token as subject).
var Capabilities = []string{
	"launch-ehr", "launch-standalone", "launch-token", "authorize-post",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect", "context-banner", "context-style",
	"context-ehr-patient", "context-standalone-patient",
	"permission-offline", "permission-online", "permission-patient", "permission-user",
	"permission-v1", "permission-v2",
	"token-exchange-openid", "token-exchange-accesstoken", "token-exchange-launchtoken",
}

var scopesSupported = []string{
	"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access",
	"patient/*.rs", "patient/*.cruds", "patient/*.read", "user/*.rs", "user/*.cruds", "user/*.read",
}

var grantTypes = []string{authkit.GrantAuthorizationCode, authkit.GrantRefreshToken, GrantTokenExchange}

// handleSMARTConfig serves {fhir}/.well-known/smart-configuration (SMART
// App Launch 2.2 conformance page). Every URL is on OtherAS's own origin.
func (s *Server) handleSMARTConfig(w http.ResponseWriter, r *http.Request) {
	s.smartDoc.Serve(w, func() any { return s.metadata().SMARTConfiguration() })
}

func (s *Server) metadata() authkit.Metadata {
	return authkit.Metadata{Issuer: s.cfg.Issuer, Scopes: scopesSupported, GrantTypes: grantTypes, Capabilities: Capabilities}
}

// handleOIDCConfig serves OpenID Connect Discovery 1.0 metadata.
func (s *Server) handleOIDCConfig(w http.ResponseWriter, r *http.Request) {
	s.oidcDoc.Serve(w, func() any { return s.metadata().OpenIDConfiguration() })
}

func (s *Server) handleStyle(w http.ResponseWriter, r *http.Request) {
	authkit.WriteJSONCached(w, map[string]any{
		"color_background": "#f7f5fa", "color_error": "#a40e26", "color_highlight": "#5b2a86",
		"color_modal_backdrop": "", "color_success": "#1a7f37", "color_text": "#1b1f24",
		"dim_border_radius": "6px", "dim_font_size": "16px", "dim_spacing_size": "16px",
		"font_family_body": "system-ui, sans-serif", "font_family_heading": "system-ui, sans-serif",
	})
}
