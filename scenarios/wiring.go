package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/broker"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/otheras"
)

// Name is the world's display name: its two organisations.
func (w *World) Name() string { return w.EHR.Name + " + " + w.Other.Name }

func (r Ready) origins() Origins {
	return Origins{Console: r.Console, EHR: originOf(r.EHRFHIR), Other: originOf(r.OtherFHIR)}
}

func registeredAt(a WorldApp, side string) bool {
	return a.RegisterAt == RegisterAtBoth || a.RegisterAt == side
}

// clientsFor turns the world's apps registered at side ("ehr" or "other")
// into client registrations, with {console}/{ehr}/{other} URLs expanded.
func (w *World) clientsFor(side string, ready Ready) []authkit.Client {
	o := ready.origins()
	var out []authkit.Client
	for _, a := range w.Apps {
		if !registeredAt(a, side) {
			continue
		}
		c := authkit.Client{
			ID:         a.ClientID,
			Name:       a.Name,
			SoftwareID: a.SoftwareID,
			Scope:      a.Scope,
			LaunchURI:  ExpandURL(a.LaunchURL, o),
			GrantTypes: []string{authkit.GrantAuthorizationCode, authkit.GrantRefreshToken},
		}
		for _, u := range a.RedirectURIs {
			c.RedirectURIs = append(c.RedirectURIs, ExpandURL(u, o))
		}
		switch a.Type {
		case AppPublic:
			c.AuthMethod = authkit.AuthNone
		case AppConfidentialSymmetric:
			c.AuthMethod = authkit.AuthSecretBasic
			c.Secret = a.Secret
		case AppConfidentialAsymmetric:
			c.AuthMethod = authkit.AuthPrivateKeyJWT
			c.JWKSURI = ExpandURL(a.JWKSURI, o)
			if a.JWKS != nil {
				c.JWKS, _ = json.Marshal(a.JWKS)
			}
			c.GrantTypes = append(c.GrantTypes, authkit.GrantClientCredentials)
		}
		out = append(out, c)
	}
	return out
}

func (w *World) ehrLifetimes() ehr.Lifetimes {
	l := w.Lifetimes
	return ehr.Lifetimes{Code: l.Code, LaunchToken: l.LaunchToken, Access: l.AccessToken, Refresh: l.RefreshToken, Backend: l.BackendToken}
}

func (w *World) appViews(ready Ready) []AppView {
	o := ready.origins()
	out := make([]AppView, 0, len(w.Apps))
	for _, a := range w.Apps {
		v := AppView{ClientID: a.ClientID, Name: a.Name, SoftwareID: a.SoftwareID, Type: a.Type,
			LaunchURL: ExpandURL(a.LaunchURL, o), Scope: a.Scope}
		for _, u := range a.RedirectURIs {
			v.RedirectURIs = append(v.RedirectURIs, ExpandURL(u, o))
		}
		switch a.RegisterAt {
		case RegisterAtBoth:
			v.RegisteredAt = []string{"ehr", "other"}
		default:
			v.RegisteredAt = []string{a.RegisterAt}
		}
		out = append(out, v)
	}
	return out
}

func (w *World) otherLifetimes() otheras.Lifetimes {
	l := w.Lifetimes
	return otheras.Lifetimes{Code: l.Code, Access: l.AccessToken, Refresh: l.RefreshToken}
}

// brokerClientID is the broker's client at both ASes (direction D); the
// two registrations share brokerSoftwareID.
const (
	brokerClientID   = "sim-broker"
	brokerSoftwareID = "https://sim.example.org/broker"
)

// brokerClient is the broker's registration at an AS.
func (r *Running) brokerClient(secret string) authkit.Client {
	return authkit.Client{
		ID: brokerClientID, Name: "sim Broker", SoftwareID: brokerSoftwareID,
		AuthMethod: authkit.AuthSecretBasic, Secret: secret,
		RedirectURIs: []string{r.ready.BrokerIssuer + "/callback"},
		GrantTypes:   []string{authkit.GrantAuthorizationCode},
	}
}

// startOtherAS starts OtherAS (directions A, B, D) and makes it the EHR's
// partner in ehrCfg; the broker is registered at both.
func (r *Running) startOtherAS(ctx context.Context, w *World, orgName, otherOrigin, dataDir string, opt Options, outbound *http.Client, ehrCfg *ehr.Config, brokerSecret string, logins *users) error {
	otherAS, err := otheras.New(ctx, otheras.Config{
		Issuer:   r.ready.OtherIssuer,
		FHIRBase: r.ready.OtherFHIR,
		Origin:   otherOrigin,
		OrgName:  orgName,
		TrustedIssuers: []otheras.TrustedEHR{{
			Issuer:   r.ready.EHRIssuer,
			FHIRBase: r.ready.EHRFHIR,
			ClientID: partnerClientID,
		}},
		Directory:           otherDirectory{store: r.otherStore},
		Users:               otherUsers{logins},
		MatchSystems:        w.Match.IdentifierSystems,
		ConfirmDemographics: w.Match.ConfirmDemographics,
		Clients:             append(w.clientsFor(RegisterAtOther, r.ready), r.brokerClient(brokerSecret)),
		Lifetimes:           w.otherLifetimes(),
		Strict:              w.Strict,
		DataPath:            filepath.Join(dataDir, "other-auth.db"),
		Now:                 opt.Now,
		Logger:              opt.Logger.With("server", "otheras"),
		HTTPClient:          outbound,
		Trace:               r.Trace,
		// The simulated EHR embeds apps; their second authorization runs
		// inside its frame too.
		FrameAncestors: []string{r.ready.Console},
	})
	if err != nil {
		return fmt.Errorf("start Other authorization server: %w", err)
	}
	r.otherAS = otherAS
	ehrCfg.Clients = append(ehrCfg.Clients, r.brokerClient(brokerSecret))
	ehrCfg.Partners = []ehr.Partner{{
		Issuer:   r.ready.OtherIssuer,
		FHIRBase: r.ready.OtherFHIR,
		ClientID: partnerClientID,
		JWKS:     otherAS.PublicJWKS(),
	}}
	return nil
}

// startBroker builds the broker (direction D) over both ASes and returns
// its origin's handler, recorded in the trace as the party Broker.
func (r *Running) startBroker(w *World, secret string, outbound *http.Client, opt Options) (http.Handler, error) {
	o := r.ready.origins()
	var clients []broker.Client
	for _, a := range w.Apps {
		if a.Type == AppConfidentialAsymmetric {
			continue // the broker authenticates apps by secret or not at all
		}
		c := broker.Client{ID: a.ClientID, Name: a.Name, Secret: a.Secret}
		for _, u := range a.RedirectURIs {
			c.RedirectURIs = append(c.RedirectURIs, ExpandURL(u, o))
		}
		clients = append(clients, c)
	}
	hc := *outbound
	hc.Transport = r.Trace.Transport(trace.Broker, r.partyOf, outbound.Transport)
	ehrSec, otherSec := r.ehrAS.SecurityURIs(), r.otherAS.SecurityURIs()
	b, err := broker.New(broker.Config{
		Issuer: r.ready.BrokerIssuer,
		EHR: broker.Upstream{Issuer: r.ready.EHRIssuer, AuthorizeURL: ehrSec.Authorize, TokenURL: ehrSec.Token,
			FHIRBase: r.ready.EHRFHIR, ClientID: brokerClientID, ClientSecret: secret},
		Other: broker.Upstream{Issuer: r.ready.OtherIssuer, AuthorizeURL: otherSec.Authorize, TokenURL: otherSec.Token,
			FHIRBase: r.ready.OtherFHIR, ClientID: brokerClientID, ClientSecret: secret},
		Clients:    clients,
		HTTPClient: &hc,
		Now:        opt.Now,
		Logger:     opt.Logger.With("server", "broker"),
	})
	if err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	r.broker = b
	mux := http.NewServeMux()
	b.Mount(mux)
	return r.Trace.Middleware(trace.Broker, brokerCaller, mux), nil
}

// brokerCaller: the browser brings authorize and callback, the app the rest.
func brokerCaller(req *http.Request) trace.Party {
	switch path.Base(req.URL.Path) {
	case "authorize", "callback":
		return trace.User
	}
	return trace.App
}

// partyOf names the party behind an outbound URL.
func (r *Running) partyOf(u *url.URL) trace.Party {
	s := u.String()
	switch {
	case strings.HasPrefix(s, r.ready.EHRIssuer+"/"):
		return trace.EHRAS
	case r.ready.OtherIssuer != "" && strings.HasPrefix(s, r.ready.OtherIssuer+"/"):
		return trace.OtherAS
	case strings.HasPrefix(s, r.ready.EHRFHIR+"/"):
		return trace.EHRFHIR
	case strings.HasPrefix(s, r.ready.OtherFHIR+"/"):
		return trace.OtherFHIR
	}
	return trace.Party(u.Host)
}

// pathOf is the path of a URL ("" when none).
func pathOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// otherPatientResolver finds an EHR patient's record at Other the way
// OtherAS does (direction C needs it in the EHR AS): the EHR Patient's
// identifiers are looked up in the Other directory by the match systems
// in order; the first system with any hit decides, and only a single hit
// is a match. With confirm, family name and birth date must agree too.
func (r *Running) otherPatientResolver(systems []string, confirm bool) func(context.Context, string) (string, bool) {
	dir := otherDirectory{store: r.otherStore}
	return func(ctx context.Context, ehrID string) (string, bool) {
		raw, err := r.ehrStore.Read(ctx, "Patient", ehrID)
		if err != nil {
			return "", false
		}
		var p patientJSON
		if json.Unmarshal(raw, &p) != nil {
			return "", false
		}
		family := ""
		if len(p.Name) > 0 {
			family = p.Name[0].Family
		}
		for _, sys := range systems {
			var hits []otheras.PatientRecord
			for _, id := range p.Identifier {
				if id.System != sys || id.Value == "" {
					continue
				}
				recs, err := dir.FindByIdentifier(ctx, sys, id.Value)
				if err != nil {
					r.logger.WarnContext(ctx, "resolve patient at Other", "err", err)
					return "", false
				}
				hits = append(hits, recs...)
			}
			if len(hits) == 0 {
				continue
			}
			if len(hits) != 1 {
				return "", false // ambiguous: weaker systems are not tried
			}
			if confirm && (!strings.EqualFold(hits[0].Family, family) || hits[0].BirthDate != p.BirthDate) {
				return "", false
			}
			return hits[0].ID, true
		}
		return "", false
	}
}
