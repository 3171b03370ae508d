package ehr_test

import (
	"context"
	"net/url"
	"testing"

	"golang.org/x/oauth2"
)

func BenchmarkAuthorizeToCode(b *testing.B) {
	e := newEnv(b, nil)
	cfg := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "user/*.rs")
	t := b
	v := oauth2.GenerateVerifier()
	br := e.browser()
	_, page := e.authorize(br, cfg, v)
	fill(t, br, page, "doc", "", "approve") // signs in once; later rounds reuse the session
	b.ResetTimer()
	for b.Loop() {
		_, page := e.authorize(br, cfg, v)
		if fill(t, br, page, "doc", "", "approve").Query().Get("code") == "" {
			b.Fatal("no code")
		}
	}
}

func BenchmarkTokenBackend(b *testing.B) {
	e := newEnv(b, nil)
	b.ResetTimer()
	for b.Loop() {
		e.backendToken(b, "asym", e.ecKey, "k1", "system/Patient.rs")
	}
}

func BenchmarkIntrospection(b *testing.B) {
	e := newEnv(b, nil)
	bt := e.backendToken(b, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	for b.Loop() {
		if st, body, _ := postForm(b, e.ts.URL+"/auth/introspect", url.Values{"token": {bt}}, "", "", bt); st != 200 || body["active"] != true {
			b.Fatal(st, body)
		}
	}
}

func BenchmarkVerifyAccess(b *testing.B) {
	e := newEnv(b, nil)
	bt := e.backendToken(b, "asym", e.ecKey, "k1", "system/Patient.rs")
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a, err := e.srv.VerifyAccess(ctx, bt)
			if err != nil || !a.Allows("Patient", "read", nil) {
				b.Fatal(err)
			}
		}
	})
}
