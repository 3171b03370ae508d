package scenarios

import (
	"encoding/json"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/authkit"
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
