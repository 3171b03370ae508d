package ehr_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
)

// A partner OtherAS resolving an RFC 8693 subject token learns which app
// (software_id) an access token or id_token was issued to; nobody else
// learns anything about id_tokens.
func TestPartnerIntrospectsSubjectTokens(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	launchURL, err := e.srv.NewLaunch(ctx, ehr.LaunchRequest{ClientID: "public", Patient: "p1", User: "doc"})
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(launchURL)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "fhirUser", "patient/*.rs")
	verifier := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, verifier, oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")))
	tok := exchange(t, e, cfg, fill(t, b, page, "doc", "", "approve"), verifier)
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		t.Fatal("no id_token")
	}
	introspect := e.ts.URL + "/auth/introspect"
	bt := e.backendToken(t, "otheras", e.partner, "pk1", "system/Patient.rs introspect")

	_, body, _ := postForm(t, introspect, url.Values{"token": {idt}}, "", "", bt)
	if body["active"] != true || body["token_type"] != "id_token" || body["client_id"] != "public" ||
		body["software_id"] != "sw-1" || body["sub"] != "doc" || body["fhirUser"] != e.cfg.FHIRBase+"/Practitioner/pr1" {
		t.Errorf("partner introspects id_token: %v", body)
	}
	// id_tokens are not single use.
	if _, body, _ = postForm(t, introspect, url.Values{"token": {idt}}, "", "", bt); body["active"] != true {
		t.Errorf("second id_token introspection: %v", body)
	}
	_, body, _ = postForm(t, introspect, url.Values{"token": {tok.AccessToken}}, "", "", bt)
	if body["active"] != true || body["client_id"] != "public" || body["software_id"] != "sw-1" {
		t.Errorf("partner introspects access token: %v", body)
	}
	// A confidential client that is not a partner learns nothing about an
	// id_token, even one that is valid.
	if _, body, _ = postForm(t, introspect, url.Values{"token": {idt}}, "secret", "s3cret", ""); len(body) != 1 || body["active"] != false {
		t.Errorf("non-partner introspects id_token: %v", body)
	}
	// Expired: inactive.
	e.clock.now = e.clock.now.Add(2 * time.Hour)
	bt = e.backendToken(t, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	if _, body, _ = postForm(t, introspect, url.Values{"token": {idt}}, "", "", bt); len(body) != 1 || body["active"] != false {
		t.Errorf("expired id_token: %v", body)
	}
}
