package ehr_test

import (
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
)

// N EHR launches, each in a new browser and with its launch-token
// consumed by the partner, leave O(1) entries in the server's memory once
// their lifetimes have passed: the binding-only sessions live as long as
// a pending request, the used-code markers as long as a code, the
// launch-token marks as long as the token. A real sign-in keeps its
// session for the sign-in lifetime.
func TestAuthorizationsLeaveNoEntriesBehind(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "fhirUser", "patient/*.rs", "launch-token")
	bt := e.backendToken(t, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	const n = 20
	for range n {
		v := oauth2.GenerateVerifier()
		tok := exchange(t, e, cfg, launchCode(t, e, cfg, v), v)
		lt, _ := tok.Extra("launch_token").(string)
		if _, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {lt}}, "", "", bt); body["active"] != true {
			t.Fatalf("partner introspection of a fresh launch-token: %v", body)
		}
	}
	// One real sign-in (standalone, confidential app).
	signedIn := e.browser()
	std := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "fhirUser", "user/*.rs")
	v := oauth2.GenerateVerifier()
	_, page := e.authorize(signedIn, std, v)
	exchange(t, e, std, fill(t, signedIn, page, "doc", "", "approve"), v)
	if held := ehr.EphemeralLen(e.srv); held < 3*n {
		t.Fatalf("%d entries held after %d flows: the flows should leave markers until they expire", held, n)
	}

	// Past a pending request's lifetime (15 min); the next write purges.
	e.clock.now = e.clock.now.Add(16 * time.Minute)
	if _, page := e.authorize(e.browser(), std, v); !hasForm(page, "password") {
		t.Fatalf("a new browser is not asked to sign in: %s", page.URL)
	}
	// Left: the sign-in session, and the new browser's session and request.
	if held := ehr.EphemeralLen(e.srv); held > 3 {
		t.Errorf("%d entries held after %d flows and 16 minutes, want at most 3", held, n)
	}
	if _, page := e.authorize(signedIn, std, v); hasForm(page, "password") {
		t.Error("the sign-in ended with the request lifetime")
	}

	// Past the sign-in lifetime (8 h): only what the last write made.
	e.clock.now = e.clock.now.Add(8 * time.Hour)
	if _, page := e.authorize(signedIn, std, v); !hasForm(page, "password") {
		t.Error("the sign-in outlived its lifetime")
	}
	if held := ehr.EphemeralLen(e.srv); held > 2 {
		t.Errorf("%d entries held after 8 hours, want at most 2", held)
	}
}
