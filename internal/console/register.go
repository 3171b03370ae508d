package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// RegisterForm is the app registration form's values.
type RegisterForm struct {
	Name, LaunchURL, RedirectURIs, Type, JWKSURL, Scope, SoftwareID, At string
}

// Registration is the outcome at one authorization server.
type Registration struct {
	Server       string // organisation name
	Endpoint     string
	ClientID     string
	ClientSecret string
	Response     string // the RFC 7591 response, pretty-printed, secret redacted
	Error        string
}

type registerPage struct {
	base
	Form    RegisterForm
	Errors  []string
	Results []Registration
	EHR     string
	Other   string
}

const defaultAppScope = "launch launch-token openid fhirUser patient/*.rs user/*.rs"

func (c *Console) registerForm(w http.ResponseWriter, r *http.Request) {
	page := registerPage{base: c.base("Register an app", "register", c.session(r)), EHR: c.cfg.EHRName, Other: c.cfg.OtherName,
		Form: RegisterForm{Type: "public", At: "both", Scope: defaultAppScope, LaunchURL: "http://localhost:3000/launch", RedirectURIs: "http://localhost:3000/callback"}}
	c.render(w, r, http.StatusOK, "register.html", page)
}

// register registers an app at one or both authorization servers with
// RFC 7591 dynamic client registration over HTTP, as any app would; one
// software_id links the two registrations (flows.md Decisions).
func (c *Console) register(w http.ResponseWriter, r *http.Request) {
	if !c.sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "Request refused", "The form was not sent from the console.")
		return
	}
	f := RegisterForm{
		Name: strings.TrimSpace(r.PostFormValue("client_name")), LaunchURL: strings.TrimSpace(r.PostFormValue("launch_url")),
		RedirectURIs: r.PostFormValue("redirect_uris"), Type: r.PostFormValue("type"), JWKSURL: strings.TrimSpace(r.PostFormValue("jwks_uri")),
		Scope: strings.TrimSpace(r.PostFormValue("scope")), SoftwareID: strings.TrimSpace(r.PostFormValue("software_id")), At: r.PostFormValue("at"),
	}
	page := registerPage{base: c.base("Register an app", "register", c.session(r)), Form: f, EHR: c.cfg.EHRName, Other: c.cfg.OtherName}
	meta, errs := c.metadata(f)
	if len(errs) > 0 {
		page.Errors = errs
		c.render(w, r, http.StatusBadRequest, "register.html", page)
		return
	}
	type target struct{ side, name, fhir string }
	var targets []target
	if f.At == "ehr" || f.At == "both" {
		targets = append(targets, target{"ehr", c.cfg.EHRName, c.cfg.Servers.EHRFHIR})
	}
	if f.At == "other" || f.At == "both" {
		targets = append(targets, target{"other", c.cfg.OtherName, c.cfg.Servers.OtherFHIR})
	}
	app := App{Name: f.Name, SoftwareID: meta["software_id"].(string), Type: f.Type, LaunchURL: f.LaunchURL, Scope: f.Scope}
	app.RedirectURIs, _ = meta["redirect_uris"].([]string)
	status := http.StatusCreated
	for _, t := range targets {
		reg := c.registerAt(r.Context(), t.fhir, meta)
		reg.Server = t.name
		if reg.Error != "" {
			status = http.StatusBadGateway
		} else {
			app.RegisteredAt = append(app.RegisteredAt, t.side)
			if t.side == "ehr" {
				app.ClientID = reg.ClientID
			} else {
				app.OtherClientID = reg.ClientID
			}
		}
		page.Results = append(page.Results, reg)
	}
	if len(app.RegisteredAt) > 0 {
		if app.ClientID == "" {
			app.ClientID = app.OtherClientID
		}
		c.mu.Lock()
		c.apps = append(c.apps, app)
		c.mu.Unlock()
	}
	c.render(w, r, status, "register.html", page)
}

// metadata builds the RFC 7591 request from the form, or says what is
// wrong with it.
func (c *Console) metadata(f RegisterForm) (map[string]any, []string) {
	var errs []string
	if f.Name == "" {
		errs = append(errs, "Give the app a name.")
	}
	var redirects []string
	for _, line := range strings.Fields(f.RedirectURIs) {
		if u, err := url.Parse(line); err != nil || !u.IsAbs() || u.Fragment != "" {
			errs = append(errs, fmt.Sprintf("Redirect URI %q must be an absolute URL without a fragment.", line))
			continue
		}
		redirects = append(redirects, line)
	}
	if len(redirects) == 0 {
		errs = append(errs, "Give at least one redirect URI.")
	}
	if f.LaunchURL != "" {
		if u, err := url.Parse(f.LaunchURL); err != nil || !u.IsAbs() {
			errs = append(errs, "The launch URL must be an absolute URL.")
		}
	}
	method := ""
	switch f.Type {
	case "public":
		method = "none"
	case "confidential-symmetric":
		method = "client_secret_basic"
	case "confidential-asymmetric":
		method = "private_key_jwt"
		if u, err := url.Parse(f.JWKSURL); f.JWKSURL == "" || err != nil || !u.IsAbs() {
			errs = append(errs, "An asymmetric client needs the absolute URL of its JWKS.")
		}
	default:
		errs = append(errs, "Choose a client type.")
	}
	switch f.At {
	case "ehr", "other", "both":
	default:
		errs = append(errs, "Choose where to register the app.")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sid := f.SoftwareID
	if sid == "" {
		sid = "urn:sim:software:" + randomString()[:12]
	}
	scope := f.Scope
	if scope == "" {
		scope = defaultAppScope
	}
	meta := map[string]any{
		"client_name": f.Name, "software_id": sid, "redirect_uris": redirects,
		"token_endpoint_auth_method": method, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "scope": scope,
	}
	if f.LaunchURL != "" {
		meta["launch_uri"] = f.LaunchURL
	}
	if method == "private_key_jwt" {
		meta["jwks_uri"] = f.JWKSURL
	}
	return meta, nil
}

// registerAt discovers the registration endpoint from the FHIR base
// (contract.md "Discovery") and registers there.
func (c *Console) registerAt(ctx context.Context, fhirBase string, meta map[string]any) Registration {
	var reg Registration
	var conf struct {
		RegistrationEndpoint string `json:"registration_endpoint"`
	}
	if err := c.getJSON(ctx, fhirBase+"/.well-known/smart-configuration", &conf); err != nil || conf.RegistrationEndpoint == "" {
		c.cfg.Logger.WarnContext(ctx, "discover registration endpoint", "fhir", fhirBase, "err", err)
		reg.Error = "The server's discovery document names no registration endpoint."
		return reg
	}
	reg.Endpoint = conf.RegistrationEndpoint
	body, _ := json.Marshal(meta)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, conf.RegistrationEndpoint, bytes.NewReader(body))
	if err != nil {
		reg.Error = "The registration endpoint is not a valid URL."
		return reg
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.cfg.Logger.WarnContext(ctx, "register app", "endpoint", conf.RegistrationEndpoint, "err", err)
		reg.Error = "The registration endpoint did not answer."
		return reg
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var out map[string]any
	if json.Unmarshal(raw, &out) != nil {
		reg.Error = fmt.Sprintf("The registration endpoint answered %d without JSON.", resp.StatusCode)
		return reg
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		// RFC 7591 §3.2.2 errors are meant for the registering developer.
		reg.Error = strings.TrimSpace(str(out["error"]) + ": " + str(out["error_description"]))
		return reg
	}
	reg.ClientID, reg.ClientSecret = str(out["client_id"]), str(out["client_secret"])
	if _, ok := out["client_secret"]; ok {
		out["client_secret"] = "(shown above, once)"
	}
	pretty, _ := json.MarshalIndent(out, "", "  ")
	reg.Response = string(pretty)
	return reg
}

func (c *Console) getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", u, err)
	}
	return nil
}
