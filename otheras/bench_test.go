package otheras_test

import (
	"testing"
)

// BenchmarkTwoServerFlow is the whole direction A flow per iteration: EHR
// launch, EHR authorize + consent + token (with launch_token), OtherAS
// authorize (context resolution: introspection, Patient read, matching)
// + consent + token.
func BenchmarkTwoServerFlow(b *testing.B) {
	run := func(b *testing.B, w *world) {
		tok, _ := w.secondLaunch(b, w.ehrLaunch(b, "p-shared"), "app-other", "approve", nil, fullScopes...)
		if tok == nil || tok.Extra("patient") != "o-ada" {
			b.Fatal("flow failed")
		}
	}
	b.Run("sequential", func(b *testing.B) {
		w := newWorld(b, nil)
		for b.Loop() {
			run(b, w)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		w := newWorld(b, nil)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b, w)
			}
		})
	})
}
