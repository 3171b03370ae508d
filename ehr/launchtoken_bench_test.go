package ehr_test

import (
	"context"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
)

// launchTokenEnv mints codes for EHR launches of the public app, with or
// without launch-token in scope.
type launchTokenEnv struct {
	e   *env
	cfg *oauth2.Config
}

func newLaunchTokenEnv(b *testing.B, withLaunchToken bool) *launchTokenEnv {
	e := newEnv(b, nil)
	scopes := []string{"launch", "patient/*.rs"}
	if withLaunchToken {
		scopes = append(scopes, "launch-token")
	}
	return &launchTokenEnv{e: e, cfg: e.oauth("public", "", oauth2.AuthStyleInParams, scopes...)}
}

// code runs one EHR launch up to the code (launch, authorize, consent).
func (l *launchTokenEnv) code(b *testing.B, verifier string) string {
	launchURL, err := l.e.srv.NewLaunch(context.Background(), ehr.LaunchRequest{ClientID: "public", Patient: "p1", User: "doc"})
	if err != nil {
		b.Fatal(err)
	}
	lu, _ := url.Parse(launchURL)
	br := l.e.browser()
	_, page := l.e.authorize(br, l.cfg, verifier, oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")),
		oauth2.SetAuthURLParam("resource", "http://other.test/fhir"))
	code := fill(b, br, page, "doc", "", "approve").Query().Get("code")
	if code == "" {
		b.Fatal("no code")
	}
	return code
}

// exchange redeems a code at the token endpoint.
func (l *launchTokenEnv) exchange(b *testing.B, code, verifier string) *oauth2.Token {
	tok, err := l.cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// BenchmarkLaunchTokenIssue times the EHR AS's code exchange for an EHR
// launch with and without launch-token in scope (no openid, so the
// launch-token is the only RSA signature): the difference is the cost of
// issuing a launch-token. Only the token request is timed.
func BenchmarkLaunchTokenIssue(b *testing.B) {
	for _, c := range []struct {
		name string
		with bool
	}{{"without", false}, {"with-launch-token", true}} {
		b.Run(c.name, func(b *testing.B) {
			l := newLaunchTokenEnv(b, c.with)
			v := oauth2.GenerateVerifier()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				code := l.code(b, v)
				b.StartTimer()
				tok := l.exchange(b, code, v)
				if lt, _ := tok.Extra("launch_token").(string); (lt != "") != c.with {
					b.Fatalf("launch_token present %v, want %v", lt != "", c.with)
				}
			}
		})
	}
}

// BenchmarkLaunchTokenCheck times the partner's check of a launch-token:
// OtherAS's introspection at the EHR AS with its Backend Services token
// (signature, expiry, audience, the single-use mark). Each launch-token is
// minted outside the timer; each is good for one check.
func BenchmarkLaunchTokenCheck(b *testing.B) {
	l := newLaunchTokenEnv(b, true)
	bt := l.e.backendToken(b, "otheras", l.e.partner, "pk1", "system/Patient.rs introspect")
	introspect := l.e.ts.URL + "/auth/introspect"
	v := oauth2.GenerateVerifier()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		lt, _ := l.exchange(b, l.code(b, v), v).Extra("launch_token").(string)
		if lt == "" {
			b.Fatal("no launch_token")
		}
		b.StartTimer()
		st, body, _ := postForm(b, introspect, url.Values{"token": {lt}}, "", "", bt)
		if st != 200 || body["active"] != true || body["patient"] != "p1" {
			b.Fatalf("introspect launch-token: %d %v", st, body)
		}
	}
}
