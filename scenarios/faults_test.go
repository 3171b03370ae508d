package scenarios_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/scenarios"
)

func TestInjectedFaultsFailTheSecondLaunchClosed(t *testing.T) {
	r := sharedWorld(t)
	p := patientOfClass(t, world(t, r), "shared")
	for _, tc := range []struct {
		name   string
		target scenarios.FaultTarget
		fault  scenarios.ServerFault
	}{
		{"EHR AS down", scenarios.FaultEHRAS, scenarios.ServerFault{Down: true}},
		{"introspection answers 500", scenarios.FaultIntrospection, scenarios.ServerFault{Status: 500}},
		{"EHR AS slower than the timeout", scenarios.FaultEHRAS, scenarios.ServerFault{Delay: 5 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lt, _ := ehrLaunch(t, r, p.EHRID, "dr.smith", "launch-token").Extra("launch_token").(string)
			if err := r.Faults.Set(tc.target, tc.fault); err != nil {
				t.Fatal(err)
			}
			defer r.Faults.Clear()
			u, _, _ := secondLaunch(t, r, lt, "approve", "launch", "patient/*.rs")
			if e := u.Query().Get("error"); (e != "temporarily_unavailable" && e != "server_error") || u.Query().Has("code") {
				t.Fatalf("redirect %s: want the authorization to fail closed", u.RawQuery)
			}
		})
	}
	if err := r.Faults.Set("nowhere", scenarios.ServerFault{Down: true}); err == nil {
		t.Fatal("unknown fault target accepted")
	}
}

func TestClockSkewExpiresTheLaunchToken(t *testing.T) {
	r := sharedWorld(t)
	p := patientOfClass(t, world(t, r), "shared")
	lt, _ := ehrLaunch(t, r, p.EHRID, "dr.smith", "launch-token").Extra("launch_token").(string)
	r.Clock.Advance(6 * time.Minute) // past the 5-minute launch-token lifetime
	defer r.Clock.Reset()
	u, _, _ := secondLaunch(t, r, lt, "approve", "launch", "patient/*.rs")
	if u.Query().Get("error") != "invalid_request" {
		t.Fatalf("expired launch-token: %s, want error=invalid_request", u.RawQuery)
	}
}

func TestFaultsAPIRoundTrips(t *testing.T) {
	r := sharedWorld(t)
	defer r.Faults.Clear()
	put := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, r.Ready().API+"/faults", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := put(`{"ehr_fhir": {"delay": "4s"}, "introspection": {"status": 500}}`); code != 200 {
		t.Fatalf("PUT faults: %d %s", code, body)
	}
	resp, err := http.Get(r.Ready().API + "/faults")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(got), `"delay": "4s"`) {
		t.Fatalf("GET faults = %s, want the delay as PUT wrote it", got)
	}
	if code, body := put(string(got)); code != 200 {
		t.Fatalf("PUT back what GET answered: %d %s", code, body)
	}
	if code, _ := put(`{"nowhere": {"down": true}}`); code != 400 {
		t.Fatalf("unknown target: %d, want 400", code)
	}
}
