package fhirstore

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

func TestCapabilityStatement(t *testing.T) {
	codec, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	sec := &SecurityURIs{
		Authorize: "http://127.0.0.1:1/auth/authorize", Token: "http://127.0.0.1:1/auth/token",
		Register: "http://127.0.0.1:1/auth/register", Manage: "http://127.0.0.1:1/auth/manage",
		Introspect: "http://127.0.0.1:1/auth/introspect", Revoke: "http://127.0.0.1:1/auth/revoke",
	}
	for _, tc := range []struct {
		name string
		sec  *SecurityURIs
	}{{"capability_open", nil}, {"capability_smart", sec}} {
		t.Run(tc.name, func(t *testing.T) {
			got := CapabilityStatement("http://127.0.0.1:1/fhir", tc.sec)
			// The statement is a valid R4 resource, and already canonical.
			canon, err := codec.Canonical(got)
			if err != nil {
				t.Fatalf("CapabilityStatement does not validate: %v", err)
			}
			if !bytes.Equal(canon, got) {
				t.Errorf("not in canonical form")
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), got) {
				t.Errorf("CapabilityStatement differs from %s (run with -update)", golden)
			}
			s := string(got)
			if tc.sec != nil && (!strings.Contains(s, oauthURIsExtension) || !strings.Contains(s, `"code":"SMART-on-FHIR"`) || !strings.Contains(s, `"valueUri":"http://127.0.0.1:1/auth/introspect"`)) {
				t.Errorf("SMART security missing")
			}
			if tc.sec == nil && strings.Contains(s, "security") {
				t.Errorf("security present without config")
			}
		})
	}
	// Served over HTTP as is.
	ts := newTestServer(t, func(c *HandlerConfig) { c.Security = sec })
	r := ts.mustStatus(t, 200, "GET", "/metadata", "")
	if m := r.json(t); m["fhirVersion"] != "4.0.1" || m["kind"] != "instance" || m["status"] != "active" {
		t.Errorf("metadata: %s", r.body)
	}
}
