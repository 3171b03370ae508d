package scenarios

// The scripted app's steps: EHR launch, standalone launch, the second
// launch at OtherAS with a launch-token, refresh, FHIR reads and Backend
// Services. Authorization requests and code exchanges use
// golang.org/x/oauth2 (PKCE S256); Backend Services uses its
// clientcredentials package with a private_key_jwt assertion. x/oauth2
// cannot send a scope with a refresh_token grant, so refreshes are posted
// by hand with the same client authentication.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/smart-sim/sim/internal/httpkit"
)

// oauthConfig is one app's client configuration at one AS.
type oauthConfig struct {
	conf oauth2.Config
	// authType is the app's registration type (public, confidential-...).
	authType string
	// key signs private_key_jwt assertions (confidential-asymmetric).
	key *jose.JSONWebKey
}

func newVerifier() string { return oauth2.GenerateVerifier() }

func (c oauthConfig) authCodeURL(state, verifier string) string {
	return c.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
}

// clientConfig builds the app's client at the AS described by d.
func (fl *flowRun) clientConfig(clientID string, d discovery, scope string) (oauthConfig, string, error) {
	av, ok := fl.rn.appView(clientID)
	if !ok {
		return oauthConfig{}, "", cannot("app %q is not registered in the world the scenario runs in", clientID)
	}
	if len(av.RedirectURIs) == 0 {
		return oauthConfig{}, "", cannot("app %q has no redirect URI", clientID)
	}
	redirect := av.RedirectURIs[0]
	c := oauthConfig{authType: av.Type, conf: oauth2.Config{
		ClientID: clientID, RedirectURL: redirect, Scopes: strings.Fields(scope),
		Endpoint: oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}}
	wa, _ := fl.rn.worldApp(clientID)
	switch av.Type {
	case AppConfidentialSymmetric:
		if wa.Secret == "" {
			return c, "", cannot("app %q is confidential-symmetric, but the scenario's world does not give its secret", clientID)
		}
		// client_secret_basic (RFC 6749 §2.3.1).
		c.conf.ClientSecret = wa.Secret
		c.conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	case AppConfidentialAsymmetric:
		k, err := signingKey(wa)
		if err != nil {
			return c, "", cannot("app %q: %v", clientID, err)
		}
		c.key = k
	}
	return c, redirect, nil
}

// signingKey finds the private JWK the scripted app signs its client
// assertions with: the first key of the app's jwks that carries its private
// part and a kid (a test key written into the world or scenario file).
func signingKey(a WorldApp) (*jose.JSONWebKey, error) {
	if a.JWKS == nil {
		return nil, errors.New("the scripted app needs the private key: give the app a jwks with a private JWK (with kid) in the world or scenario file")
	}
	b, err := json.Marshal(a.JWKS)
	if err != nil {
		return nil, errors.New("the app's jwks is not a JWK set")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, errors.New("the app's jwks is not a JWK set")
	}
	for i := range set.Keys {
		k := set.Keys[i]
		if !k.IsPublic() && k.Valid() && k.KeyID != "" {
			return &k, nil
		}
	}
	return nil, errors.New("the app's jwks has no private key with a kid, so the scripted app cannot sign a client assertion")
}

// assertion is a private_key_jwt client assertion for the token endpoint
// (SMART client-confidential-asymmetric, RFC 7523).
func (c oauthConfig) assertion() (string, error) {
	alg := jose.SignatureAlgorithm(c.key.Algorithm)
	if alg == "" {
		switch k := c.key.Key.(type) {
		case *rsa.PrivateKey:
			alg = jose.RS384
		case *ecdsa.PrivateKey:
			alg = jose.ES384
			if k.Curve == elliptic.P256() {
				alg = jose.ES256
			}
		default:
			return "", errors.New("the app's key is neither RSA nor EC")
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: c.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", c.key.KeyID))
	if err != nil {
		return "", errors.New("the app's key cannot sign")
	}
	now := time.Now()
	cl := jwt.Claims{
		Issuer: c.conf.ClientID, Subject: c.conf.ClientID, Audience: jwt.Audience{c.conf.Endpoint.TokenURL},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: randomState(),
	}
	s, err := jwt.Signed(signer).Claims(cl).Serialize()
	if err != nil {
		return "", errors.New("the app's key cannot sign")
	}
	return s, nil
}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// authParams are the client authentication form parameters (beyond what
// x/oauth2 sends for the auth style).
func (c oauthConfig) authParams() (url.Values, error) {
	if c.key == nil {
		return nil, nil
	}
	a, err := c.assertion()
	if err != nil {
		return nil, cannot("%v", err)
	}
	return url.Values{"client_assertion_type": {assertionType}, "client_assertion": {a}}, nil
}

// exchange redeems a code with x/oauth2 and records the outcome in out.
func (fl *flowRun) exchange(ctx context.Context, c oauthConfig, code, verifier string, out *stepOut) error {
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	extra, err := c.authParams()
	if err != nil {
		return err
	}
	for k, vs := range extra {
		opts = append(opts, oauth2.SetAuthURLParam(k, vs[0]))
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, fl.app)
	tok, err := c.conf.Exchange(ctx, code, opts...)
	out.tokenEP = c.conf.Endpoint.TokenURL
	fl.tokenOutcome(tok, err, out)
	return nil
}

// tokenOutcome turns an x/oauth2 result into the step's outcome.
func (fl *flowRun) tokenOutcome(tok *oauth2.Token, err error, out *stepOut) {
	out.status = int(fl.tr.last.Load())
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			out.errCode, out.errDesc = re.ErrorCode, re.ErrorDescription
			if re.Response != nil {
				out.status = re.Response.StatusCode
			}
			if out.errCode == "" {
				out.errCode = "server_error"
			}
		} else {
			out.errCode, out.status = "unreachable", 0
		}
		out.token, out.tokenRaw = nil, nil
		return
	}
	// x/oauth2 exposes the response's members one at a time (Extra); the
	// transport kept the whole body of the token response.
	raw := fl.tr.lastToken.Load()
	if raw != nil && raw.json {
		// x/oauth2 has parsed this body, a JSON object, into the map its
		// Extra reads: the values come from there, and the object is
		// parsed again only if a check reads it (tokenBody).
		out.token, out.tokenRaw = nil, raw.body
		out.fillValuesFrom(tok.Extra)
		return
	}
	var body map[string]any
	if raw != nil {
		_ = json.Unmarshal(raw.body, &body)
	}
	if body == nil {
		body = map[string]any{"access_token": tok.AccessToken, "token_type": tok.TokenType}
		for _, k := range []string{"refresh_token", "expires_in", "scope", "patient", "encounter", "id_token", "launch_token", "fhirContext"} {
			if v := tok.Extra(k); v != nil {
				body[k] = v
			}
		}
	}
	out.token, out.tokenRaw = body, nil
	out.fillValues()
}

// ehrLaunch: the EHR launches the app (control API), the app authorizes at
// the EHR AS with launch, aud (and resource), the user consents, the app
// redeems the code.
func (fl *flowRun) ehrLaunch(ctx context.Context, st *Step, faults []Fault) (*stepOut, error) {
	s := st.EHRLaunch
	out := &stepOut{kind: StepEHRLaunch, server: ServerEHR, app: s.App}
	av, ok := fl.rn.appView(s.App)
	if !ok {
		return nil, cannot("app %q is not registered in the world the scenario runs in", s.App)
	}
	var launched struct {
		URL string `json:"url"`
	}
	status, err := fl.rn.apiCall(ctx, http.MethodPost, "/launches", LaunchRequest{
		ClientID: s.App, LaunchURL: av.LaunchURL, Patient: fl.cell.Patient.EHRID, User: s.User.Login,
	}, &launched)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated || launched.URL == "" {
		return nil, cannot("the EHR could not launch app %q for patient %s and user %s (control API status %d)", s.App, fl.cell.Patient.EHRID, s.User.Login, status)
	}
	lu, err := url.Parse(launched.URL)
	if err != nil {
		return nil, cannot("the EHR launch URL is not a URL")
	}
	iss, launch := lu.Query().Get("iss"), lu.Query().Get("launch")
	if strings.TrimSuffix(iss, "/") != fl.rn.ready.EHRFHIR || launch == "" {
		return nil, cannot("the EHR launched the app with iss %q and launch %t; the app expects iss %s and a launch", clip(iss), launch != "", fl.rn.ready.EHRFHIR)
	}
	d, err := fl.discover(ctx, iss)
	if err != nil {
		return nil, err
	}
	params := url.Values{"launch": {launch}, "aud": {iss}}
	for _, r := range s.Resource {
		params.Add("resource", fl.rn.fhirBase(r))
	}
	return out, fl.launch(ctx, out, s.App, d, s.Scope, params, s.User, "", faults)
}

// standalone: the app starts at an AS without a launch; the user logs in
// and picks the patient.
func (fl *flowRun) standalone(ctx context.Context, st *Step, faults []Fault) (*stepOut, error) {
	s := st.StandaloneLaunch
	out := &stepOut{kind: StepStandaloneLaunch, server: s.Server, app: s.App}
	base := fl.rn.fhirBase(s.Server)
	d, err := fl.discover(ctx, base)
	if err != nil {
		return nil, err
	}
	params := url.Values{"aud": {base}}
	for _, r := range s.Resource {
		params.Add("resource", fl.rn.fhirBase(r))
	}
	pick := fl.cell.Patient.EHRID
	if s.Server == ServerOther {
		pick = fl.cell.Patient.OtherID
		if pick == "" && len(fl.cell.Patient.OtherRecords) > 0 {
			pick = fl.cell.Patient.OtherRecords[0]
		}
	}
	return out, fl.launch(ctx, out, s.App, d, s.Scope, params, s.User, pick, faults)
}

// otherLaunch: the second launch at OtherAS with launch=<launch-token>.
func (fl *flowRun) otherLaunch(ctx context.Context, st *Step, faults []Fault) (*stepOut, error) {
	s := st.OtherLaunch
	app := s.App
	if ft, ok := hasFaultKind(faults, "launch_token", "other_app"); ok {
		app = ft.App
	}
	out := &stepOut{kind: StepOtherLaunch, server: ServerOther, app: app}
	lt, err := fl.expand(s.LaunchToken)
	if err != nil {
		return nil, err
	}
	base := fl.rn.ready.OtherFHIR
	d, err := fl.discover(ctx, base)
	if err != nil {
		return nil, err
	}
	params := url.Values{"launch": {lt}, "aud": {base}}
	if _, ok := hasFaultKind(faults, "launch_token", "replayed"); ok {
		// Present the launch-token once first; the step judges the replay.
		first := &stepOut{}
		if err := fl.launch(ctx, first, s.App, d, s.Scope, params, UserAction{Login: s.User.Login, Password: s.User.Password, Decision: DecisionApprove}, "", nil); err != nil {
			return nil, err
		}
	}
	return out, fl.launch(ctx, out, app, d, s.Scope, params, s.User, "", faults)
}

// launch authorizes (playing the user) and redeems the code.
func (fl *flowRun) launch(ctx context.Context, out *stepOut, clientID string, d discovery, scope string, params url.Values, ua UserAction, pick string, faults []Fault) error {
	c, redirect, err := fl.clientConfig(clientID, d, scope)
	if err != nil {
		return err
	}
	ar, err := fl.authorize(ctx, authorizeRequest{disc: d, clientID: clientID, redirect: redirect, scope: scope, params: params, user: ua, patient: pick}, c)
	if err != nil {
		return err
	}
	if ar.errCode != "" {
		out.errCode, out.errDesc, out.status = ar.errCode, ar.errDesc, ar.status
		return nil
	}
	if err := fl.exchange(ctx, c, ar.code, ar.verifier, out); err != nil {
		return err
	}
	if _, ok := hasFaultKind(faults, "code", "replayed"); ok {
		// Redeem the same code again; the step judges the second answer.
		return fl.exchange(ctx, c, ar.code, ar.verifier, out)
	}
	return nil
}

// refresh redeems the refresh token of an earlier step (RFC 6749 §6).
func (fl *flowRun) refresh(ctx context.Context, st *Step) (*stepOut, error) {
	s := st.Refresh
	from, ok := fl.steps[s.From]
	if !ok {
		return nil, cannot("step %q did not run", s.From)
	}
	out := &stepOut{kind: StepRefresh, server: from.server, app: from.app}
	rt := ""
	if from.values != nil {
		rt = from.values["refresh_token"]
	}
	if rt == "" {
		return nil, cannot("step %q got no refresh_token", s.From)
	}
	d, err := fl.discover(ctx, fl.rn.fhirBase(from.server))
	if err != nil {
		return nil, err
	}
	c, _, err := fl.clientConfig(from.app, d, s.Scope)
	if err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	if s.Scope != "" {
		form.Set("scope", s.Scope)
	}
	if err := fl.postToken(ctx, c, form, out); err != nil {
		return nil, err
	}
	return out, nil
}

// postToken posts a token request with the app's client authentication.
func (fl *flowRun) postToken(ctx context.Context, c oauthConfig, form url.Values, out *stepOut) error {
	extra, err := c.authParams()
	if err != nil {
		return err
	}
	for k, vs := range extra {
		form[k] = vs
	}
	if c.conf.Endpoint.AuthStyle != oauth2.AuthStyleInHeader {
		form.Set("client_id", c.conf.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.conf.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return cannot("the app could not build the token request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.conf.Endpoint.AuthStyle == oauth2.AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(c.conf.ClientID), url.QueryEscape(c.conf.ClientSecret))
	}
	out.tokenEP = c.conf.Endpoint.TokenURL
	resp, err := fl.app.Do(req)
	if err != nil {
		out.errCode, out.status = "unreachable", 0
		return nil
	}
	defer resp.Body.Close()
	b, _ := httpkit.ReadBody(resp, 1<<20)
	out.status = resp.StatusCode
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	if resp.StatusCode/100 != 2 {
		out.errCode, _ = body["error"].(string)
		out.errDesc, _ = body["error_description"].(string)
		if out.errCode == "" {
			out.errCode = "server_error"
		}
		return nil
	}
	if body == nil {
		out.errCode = "server_error"
		return nil
	}
	out.token = body
	out.fillValues()
	return nil
}

// tokenExchange is an RFC 8693 token exchange at OtherAS (direction B)
// with the app's client authentication: client_secret_basic for a
// confidential-symmetric app, a private_key_jwt assertion for a
// confidential-asymmetric one (a public app sends only its client_id, and
// is refused).
func (fl *flowRun) tokenExchange(ctx context.Context, st *Step, faults []Fault) (*stepOut, error) {
	s := st.TokenExchange
	app := s.App
	if ft, ok := hasFaultKind(faults, "launch_token", "other_app"); ok {
		app = ft.App
	}
	out := &stepOut{kind: StepTokenExchange, server: ServerOther, app: app}
	subject, err := fl.expand(s.SubjectToken)
	if err != nil {
		return nil, err
	}
	typ, ok := subjectTokenTypeURN(s.SubjectTokenType)
	if !ok {
		return nil, cannot("subject_token_type %q is neither id_token nor access_token", clip(s.SubjectTokenType))
	}
	d, err := fl.discover(ctx, fl.rn.ready.OtherFHIR)
	if err != nil {
		return nil, err
	}
	form := func() url.Values {
		f := url.Values{
			"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":      {subject},
			"subject_token_type": {typ},
			"scope":              {s.Scope},
		}
		for _, r := range s.Resource {
			f.Add("resource", fl.rn.fhirBase(r))
		}
		return f
	}
	if _, ok := hasFaultKind(faults, "launch_token", "replayed"); ok {
		// Exchange the subject once first; the step judges the replay.
		c, _, err := fl.clientConfig(s.App, d, s.Scope)
		if err != nil {
			return nil, err
		}
		if err := fl.postToken(ctx, c, form(), &stepOut{}); err != nil {
			return nil, err
		}
	}
	c, _, err := fl.clientConfig(app, d, s.Scope)
	if err != nil {
		return nil, err
	}
	if err := fl.postToken(ctx, c, form(), out); err != nil {
		return nil, err
	}
	return out, nil
}

// brokerLaunch is direction D: one authorization at the broker (for an
// EHR launch, the EHR launches the app's launch URL for the broker's EHR
// client and the app passes launch on). The user logs in and consents at
// the EHR AS and consents at OtherAS on the way; the app gets one token
// response with the EHR token and additional_tokens.
func (fl *flowRun) brokerLaunch(ctx context.Context, st *Step, faults []Fault) (*stepOut, error) {
	s := st.BrokerLaunch
	out := &stepOut{kind: StepBrokerLaunch, server: ServerEHR, app: s.App}
	issuer := fl.rn.ready.BrokerIssuer
	if issuer == "" {
		return nil, cannot("the world runs no broker (broker_issuer is not in its ready information)")
	}
	av, ok := fl.rn.appView(s.App)
	if !ok {
		return nil, cannot("app %q is not registered in the world the scenario runs in", s.App)
	}
	d, err := fl.discover(ctx, issuer)
	if err != nil {
		return nil, err
	}
	params := url.Values{}
	pick := ""
	if s.Launch == BrokerLaunchStandalone {
		pick = fl.cell.Patient.EHRID
	} else {
		var launched struct {
			URL string `json:"url"`
		}
		status, err := fl.rn.apiCall(ctx, http.MethodPost, "/launches", LaunchRequest{
			ClientID: brokerClientID, LaunchURL: av.LaunchURL, Patient: fl.cell.Patient.EHRID, User: s.User.Login,
		}, &launched)
		if err != nil {
			return nil, err
		}
		if status != http.StatusCreated || launched.URL == "" {
			return nil, cannot("the EHR could not launch app %q through the broker for patient %s and user %s (control API status %d)", s.App, fl.cell.Patient.EHRID, s.User.Login, status)
		}
		lu, err := url.Parse(launched.URL)
		if err != nil || lu.Query().Get("launch") == "" {
			return nil, cannot("the EHR launch URL carries no launch")
		}
		params.Set("launch", lu.Query().Get("launch"))
	}
	if err := fl.launch(ctx, out, s.App, d, s.Scope, params, s.User, pick, faults); err != nil {
		return nil, err
	}
	if token := out.tokenBody(); token != nil {
		out.values["ehr_token"] = out.values["access_token"]
		if e, ok := additionalEntry(token, "additional_tokens", fl.rn.ready.OtherFHIR); ok {
			for k, name := range map[string]string{"access_token": "other_token", "patient": "other_patient", "scope": "other_scope"} {
				if v, ok := e[k]; ok && v != nil {
					out.values[name] = scalarText(v)
				}
			}
		}
		if e, ok := additionalEntry(token, "additional_token_errors", fl.rn.ready.OtherFHIR); ok {
			out.values["other_error"], _ = e["error"].(string)
		}
	}
	return out, nil
}

// additionalEntry finds the entry for resource in a broker token
// response's list under key (additional_tokens or
// additional_token_errors).
func additionalEntry(token map[string]any, key, resource string) (map[string]any, bool) {
	list, _ := token[key].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		if r, _ := m["resource"].(string); m != nil && strings.TrimSuffix(r, "/") == strings.TrimSuffix(resource, "/") {
			return m, true
		}
	}
	return nil, false
}

// read is a FHIR request with a bearer token.
func (fl *flowRun) read(ctx context.Context, st *Step) (*stepOut, error) {
	s := st.Read
	out := &stepOut{kind: StepRead, server: s.Server}
	path, err := fl.expand(s.Path)
	if err != nil {
		return nil, err
	}
	bearer := ""
	switch {
	case s.Token == TokenNone:
	case strings.Contains(s.Token, "{{"):
		if bearer, err = fl.expand(s.Token); err != nil {
			return nil, err
		}
	default:
		from, ok := fl.steps[s.Token]
		key := "access_token"
		if ok && from.kind == StepBrokerLaunch && s.Server == ServerOther {
			// A broker launch holds a token per server.
			key = "other_token"
		}
		if !ok || from.values[key] == "" {
			return nil, cannot("step %q got no access token for %s to read with", s.Token, s.Server)
		}
		bearer = from.values[key]
	}
	var body struct {
		ResourceType string            `json:"resourceType"`
		ID           string            `json:"id"`
		Entry        []json.RawMessage `json:"entry"`
	}
	status, err := fl.getJSON(ctx, fl.rn.fhirBase(s.Server)+"/"+path, bearer, &body)
	if err != nil && status == 0 {
		out.errCode = "unreachable"
	}
	out.status = status
	if status/100 == 2 {
		switch body.ResourceType {
		case "Bundle":
			out.count = len(body.Entry)
		case "":
		default:
			out.count, out.id = 1, body.ID
		}
	}
	out.values = map[string]string{"status": itoa(status), "id": out.id, "count": itoa(out.count)}
	return out, nil
}

// backend is a Backend Services token request: client_credentials with a
// private_key_jwt assertion (SMART backend-services.md).
func (fl *flowRun) backend(ctx context.Context, st *Step) (*stepOut, error) {
	s := st.Backend
	out := &stepOut{kind: StepBackend, server: s.Server, app: s.App}
	d, err := fl.discover(ctx, fl.rn.fhirBase(s.Server))
	if err != nil {
		return nil, err
	}
	c, _, err := fl.clientConfig(s.App, d, s.Scope)
	if err != nil {
		return nil, err
	}
	if c.key == nil {
		return nil, cannot("app %q is not confidential-asymmetric in the world the scenario runs in", s.App)
	}
	extra, err := c.authParams()
	if err != nil {
		return nil, err
	}
	cc := clientcredentials.Config{ClientID: s.App, TokenURL: d.TokenEndpoint, Scopes: strings.Fields(s.Scope),
		EndpointParams: extra, AuthStyle: oauth2.AuthStyleInParams}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, fl.app))
	out.tokenEP = d.TokenEndpoint
	fl.tokenOutcome(tok, err, out)
	return out, nil
}
