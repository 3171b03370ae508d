package fhirstore

import (
	"encoding/json"
	"sort"
)

// capabilityDate is the publication date of this server's capabilities; it
// changes when the supported features do.
const capabilityDate = "2025-01-01"

const (
	oauthURIsExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
	securityServiceCS  = "http://terminology.hl7.org/CodeSystem/restful-security-service"
)

type csCode struct {
	Code string `json:"code"`
}

type csSearchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

type csResource struct {
	Type              string          `json:"type"`
	Interaction       []csCode        `json:"interaction"`
	Versioning        string          `json:"versioning"`
	ReadHistory       bool            `json:"readHistory"`
	UpdateCreate      bool            `json:"updateCreate"`
	ConditionalCreate bool            `json:"conditionalCreate"`
	ConditionalUpdate bool            `json:"conditionalUpdate"`
	ConditionalDelete string          `json:"conditionalDelete"`
	SearchInclude     []string        `json:"searchInclude,omitempty"`
	SearchParam       []csSearchParam `json:"searchParam"`
}

type csExtension struct {
	URL       string        `json:"url"`
	ValueURI  string        `json:"valueUri,omitempty"`
	Extension []csExtension `json:"extension,omitempty"`
}

type csCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type csSecurity struct {
	Extension []csExtension `json:"extension,omitempty"`
	Cors      bool          `json:"cors"`
	Service   []struct {
		Coding []csCoding `json:"coding"`
		Text   string     `json:"text,omitempty"`
	} `json:"service,omitempty"`
	Description string `json:"description,omitempty"`
}

type csRest struct {
	Mode        string          `json:"mode"`
	Security    *csSecurity     `json:"security,omitempty"`
	Resource    []csResource    `json:"resource"`
	SearchParam []csSearchParam `json:"searchParam"`
}

type capabilityStatement struct {
	ResourceType string `json:"resourceType"`
	Status       string `json:"status"`
	Date         string `json:"date"`
	Kind         string `json:"kind"`
	Software     struct {
		Name string `json:"name"`
	} `json:"software"`
	Implementation struct {
		Description string `json:"description"`
		URL         string `json:"url,omitempty"`
	} `json:"implementation"`
	FhirVersion string   `json:"fhirVersion"`
	Format      []string `json:"format"`
	Rest        []csRest `json:"rest"`
}

// CapabilityStatement returns this server's R4 CapabilityStatement: exactly
// the resource types, interactions and search parameters it implements,
// plus the SMART oauth-uris extension when sec is non-nil.
func CapabilityStatement(baseURL string, sec *SecurityURIs) json.RawMessage {
	cs := capabilityStatement{
		ResourceType: "CapabilityStatement",
		Status:       "active",
		Date:         capabilityDate,
		Kind:         "instance",
		FhirVersion:  "4.0.1",
		Format:       []string{"json", "application/fhir+json"},
	}
	cs.Software.Name = "sim FHIR server"
	cs.Implementation.Description = "sim simulated FHIR R4 server"
	cs.Implementation.URL = baseURL
	rest := csRest{Mode: "server", SearchParam: []csSearchParam{
		{Name: "_id", Type: "token"},
		{Name: "_lastUpdated", Type: "date"},
	}}
	for _, t := range sortedTypes() {
		r := csResource{
			Type: t,
			Interaction: []csCode{{"read"}, {"vread"}, {"update"}, {"delete"},
				{"history-instance"}, {"create"}, {"search-type"}},
			Versioning:        "versioned",
			ReadHistory:       true,
			UpdateCreate:      true,
			ConditionalDelete: "not-supported",
		}
		specs := append([]paramSpec(nil), resourceTypes[t]...)
		sort.Slice(specs, func(i, j int) bool { return specs[i].name < specs[j].name })
		for _, p := range specs {
			r.SearchParam = append(r.SearchParam, csSearchParam{Name: p.name, Type: p.kind.String()})
			if p.kind == kindRef && t == "Organization" {
				r.SearchInclude = append(r.SearchInclude, t+":"+p.name)
			}
		}
		rest.Resource = append(rest.Resource, r)
	}
	if sec != nil {
		s := &csSecurity{Cors: true, Description: "SMART App Launch 2.2 (OAuth 2.0 bearer tokens)"}
		oauth := csExtension{URL: oauthURIsExtension}
		for _, u := range []struct{ name, uri string }{
			{"authorize", sec.Authorize}, {"token", sec.Token}, {"register", sec.Register},
			{"manage", sec.Manage}, {"introspect", sec.Introspect}, {"revoke", sec.Revoke},
		} {
			if u.uri != "" {
				oauth.Extension = append(oauth.Extension, csExtension{URL: u.name, ValueURI: u.uri})
			}
		}
		s.Extension = []csExtension{oauth}
		s.Service = append(s.Service, struct {
			Coding []csCoding `json:"coding"`
			Text   string     `json:"text,omitempty"`
		}{Coding: []csCoding{{System: securityServiceCS, Code: "SMART-on-FHIR", Display: "SMART-on-FHIR"}}, Text: "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"})
		rest.Security = s
	}
	cs.Rest = []csRest{rest}
	// Encode through a map so keys come out sorted, as jsonformat writes them.
	b, err := canonicalJSON(cs)
	if err == nil {
		var doc map[string]any
		if doc, err = decodeDoc(b); err == nil {
			b, err = canonicalJSON(doc)
		}
	}
	if err != nil {
		// Built from constant data: unreachable, but never panic.
		return json.RawMessage(`{"resourceType":"CapabilityStatement","status":"active","date":"` + capabilityDate + `","kind":"instance","fhirVersion":"4.0.1","format":["json"]}`)
	}
	return b
}
