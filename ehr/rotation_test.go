package ehr_test

import (
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// Rotating the signing key keeps tokens issued before it valid: the old key
// stays in the published JWKS, and new tokens carry the new kid.
func TestKeyRotationKeepsIssuedTokensValid(t *testing.T) {
	e := newEnv(t, nil)
	issue := func() *oauth2.Token {
		cfg := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "fhirUser", "launch/patient", "patient/*.rs")
		v := oauth2.GenerateVerifier()
		b := e.browser()
		_, page := e.authorize(b, cfg, v)
		return exchange(t, e, cfg, fill(t, b, page, "doc", "p1", "approve"), v)
	}
	kid := func(tok *oauth2.Token) string {
		raw, _ := tok.Extra("id_token").(string)
		jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}
	before := issue()
	if err := e.srv.RotateKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := issue()
	if kid(before) == kid(after) {
		t.Fatalf("the id_token after rotation has the old kid %s", kid(before))
	}
	// Both verify against the published JWKS (go-oidc fetches jwks_uri).
	verifyIDToken(t, e, before, "secret")
	verifyIDToken(t, e, after, "secret")
	for _, tok := range []*oauth2.Token{before, after} {
		if _, err := e.srv.VerifyAccess(context.Background(), tok.AccessToken); err != nil {
			t.Fatalf("access token after rotation: %v", err)
		}
	}
}
