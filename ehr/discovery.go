package ehr

import (
	"net/http"
	"slices"
	"strings"

	"github.com/smart-sim/sim/internal/authkit"
)

// Capabilities the EHR AS advertises (SMART App Launch 2.2 conformance,
// plus the draft's launch-token).
var Capabilities = []string{
	"launch-ehr", "launch-standalone", "authorize-post",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect",
	"context-banner", "context-style",
	"context-ehr-patient", "context-ehr-encounter",
	"context-standalone-patient", "context-standalone-encounter",
	"permission-offline", "permission-online", "permission-patient", "permission-user",
	"permission-v1", "permission-v2",
	"launch-token",
}

var scopesSupported = []string{
	"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
	"offline_access", "online_access", "launch-token",
	"patient/*.rs", "patient/*.cruds", "patient/*.read", "patient/*.write", "patient/*.*",
	"user/*.rs", "user/*.cruds", "user/*.read", "user/*.write", "user/*.*",
	"system/*.rs", "system/*.read", ScopeIntrospect,
}

var grantTypes = []string{authkit.GrantAuthorizationCode, authkit.GrantRefreshToken, authkit.GrantClientCredentials}

type associatedEndpoint struct {
	URL          string   `json:"url"`
	Capabilities []string `json:"capabilities"`
}

// handleSMARTConfig serves {fhir}/.well-known/smart-configuration (SMART
// App Launch 2.2 conformance page).
func (s *Server) handleSMARTConfig(w http.ResponseWriter, r *http.Request) {
	s.smartDoc.Serve(w, s.smartConfiguration)
}

func (s *Server) smartConfiguration() any {
	assoc := []associatedEndpoint{}
	for _, o := range s.cfg.Others {
		caps := o.Capabilities
		if caps == nil {
			caps = []string{}
		}
		assoc = append(assoc, associatedEndpoint{URL: o.FHIRBase, Capabilities: caps})
	}
	caps := Capabilities
	if len(s.cfg.Governed) > 0 {
		caps = append(slices.Clone(Capabilities), CapabilityMultiAud)
	}
	doc := s.metadata(caps).SMARTConfiguration()
	doc["user_access_brand_bundle"] = s.cfg.Origin + "/brands/bundle.json"
	doc["user_access_brand_identifier"] = s.cfg.OrgIdentifier
	doc["associated_endpoints"] = assoc
	return doc
}

// CapabilityMultiAud is the draft's capability for one access token valid
// at several FHIR servers governed by one AS (flows.md direction C).
const CapabilityMultiAud = "auth-multi-aud-token"

// GovernedDiscovery serves {governed fhir}/.well-known/smart-configuration
// for a governed server: the same document as the EHR's own (same
// endpoints, auth-multi-aud-token among the capabilities), because the
// same AS decides for both.
func (s *Server) GovernedDiscovery() http.Handler { return http.HandlerFunc(s.handleSMARTConfig) }

func (s *Server) metadata(caps []string) authkit.Metadata {
	return authkit.Metadata{Issuer: s.cfg.Issuer, Scopes: scopesSupported, GrantTypes: grantTypes, Capabilities: caps}
}

// handleOIDCConfig serves OpenID Connect Discovery 1.0 metadata.
func (s *Server) handleOIDCConfig(w http.ResponseWriter, r *http.Request) {
	s.oidcDoc.Serve(w, func() any {
		doc := s.metadata(Capabilities).OpenIDConfiguration()
		doc["prompt_values_supported"] = []string{"none", "login", "consent"}
		doc["request_parameter_supported"] = false
		doc["claims_parameter_supported"] = false
		return doc
	})
}

// handleBrands serves the SMART User-access Brands bundle: one
// Organization + Endpoint per organisation. The EHR Organization also
// lists the other organisations' endpoints so an app can find them from
// the EHR's brand.
func (s *Server) handleBrands(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now().UTC().Format("2006-01-02T15:04:05Z")
	type entry struct {
		FullURL  string `json:"fullUrl"`
		Resource any    `json:"resource"`
	}
	var entries []entry
	base := s.cfg.Origin + "/brands"
	endpoint := func(id, name, address string) map[string]any {
		return map[string]any{
			"resourceType": "Endpoint",
			"id":           id,
			"status":       "active",
			"name":         name,
			"address":      address,
			"connectionType": map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
				"code":   "hl7-fhir-rest",
			},
			"payloadType": []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
				"code":   "none",
			}}}},
			"extension": []any{map[string]any{
				"url":       "http://hl7.org/fhir/StructureDefinition/endpoint-fhir-version",
				"valueCode": "4.0.1",
			}},
		}
	}
	org := func(id, name string, ident Identifier, website string, endpoints []string, portalEndpoints []string) map[string]any {
		var refs, portal []any
		for _, e := range endpoints {
			refs = append(refs, map[string]any{"reference": "Endpoint/" + e})
		}
		portal = append(portal, map[string]any{"url": "portalName", "valueString": name + " portal"})
		for _, e := range portalEndpoints {
			portal = append(portal, map[string]any{"url": "portalEndpoint", "valueReference": map[string]any{"reference": "Endpoint/" + e}})
		}
		return map[string]any{
			"resourceType": "Organization",
			"id":           id,
			"active":       true,
			"name":         name,
			"identifier":   []any{ident},
			"type": []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://hl7.org/fhir/smart-app-launch/CodeSystem/user-access-category",
				"code":   "clinical",
			}}}},
			"telecom":  []any{map[string]any{"system": "url", "value": website}},
			"endpoint": refs,
			"extension": []any{map[string]any{
				"url":       "http://hl7.org/fhir/StructureDefinition/organization-portal",
				"extension": portal,
			}},
		}
	}
	ehrEndpoints := []string{"ehr-fhir"}
	for i := range s.cfg.Others {
		ehrEndpoints = append(ehrEndpoints, otherEndpointID(i))
	}
	entries = append(entries, entry{base + "/Organization/ehr", org("ehr", s.cfg.OrgName, s.cfg.OrgIdentifier, s.cfg.Origin, ehrEndpoints, []string{"ehr-fhir"})})
	entries = append(entries, entry{base + "/Endpoint/ehr-fhir", endpoint("ehr-fhir", s.cfg.OrgName+" FHIR R4", s.cfg.FHIRBase)})
	for i, o := range s.cfg.Others {
		id := otherEndpointID(i)
		website := o.Identifier.Value
		if !strings.Contains(website, "://") {
			website = o.FHIRBase
		}
		entries = append(entries, entry{base + "/Organization/" + "other-" + itoa(i+1), org("other-"+itoa(i+1), o.Name, o.Identifier, website, []string{id}, []string{id})})
		entries = append(entries, entry{base + "/Endpoint/" + id, endpoint(id, o.Name+" FHIR R4", o.FHIRBase)})
	}
	authkit.WriteJSONCached(w, map[string]any{
		"resourceType": "Bundle",
		"type":         "collection",
		"timestamp":    now,
		"entry":        entries,
	})
}

func otherEndpointID(i int) string { return "other-fhir-" + itoa(i+1) }

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
