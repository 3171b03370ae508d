package ehr_test

import (
	"net/url"
	"runtime"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// BenchmarkRetainedAfterLifetimes runs EHR launches (new browser each,
// launch-token consumed by the partner) and reports the live heap the
// server keeps per flow while the flows' entries are alive
// (live-B/flow) and after a pending request's lifetime has passed and a
// write has purged (expired-B/flow): what a long-running server settles
// at, beyond the entries still inside their lifetimes.
func BenchmarkRetainedAfterLifetimes(b *testing.B) {
	e := newEnv(b, nil)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "fhirUser", "patient/*.rs", "launch-token")
	bt := e.backendToken(b, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	flow := func() {
		v := oauth2.GenerateVerifier()
		tok := exchange(b, e, cfg, launchCode(b, e, cfg, v), v)
		lt, _ := tok.Extra("launch_token").(string)
		if _, body, _ := postForm(b, e.ts.URL+"/auth/introspect", url.Values{"token": {lt}}, "", "", bt); body["active"] != true {
			b.Fatalf("introspection: %v", body)
		}
	}
	for range 20 {
		flow()
	}
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := heap()
	b.ResetTimer()
	for range b.N {
		flow()
	}
	b.StopTimer()
	live := heap()
	e.clock.now = e.clock.now.Add(16 * time.Minute)
	e.authorize(e.browser(), cfg, oauth2.GenerateVerifier()) // a write: purges
	expired := heap()
	b.ReportMetric(float64(live-before)/float64(b.N), "live-B/flow")
	b.ReportMetric(float64(expired-before)/float64(b.N), "expired-B/flow")
}
