package trace

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestRedactBodyKeepsPlainObjectsAsSent: an object with no secret member
// at its top level (a FHIR resource, whose codings have "code" members
// further down) is kept byte for byte, without decoding.
func TestRedactBodyKeepsPlainObjectsAsSent(t *testing.T) {
	for _, body := range []string{
		`{"resourceType":"Patient","id":"p1","identifier":[{"type":{"coding":[{"code":"MR"}]},"value":"x"}],"text":{"div":"<div>a \"b\" {c}</div>"}}`,
		` {"b":2,"a":1} `,
		`{}`,
	} {
		m := &Message{}
		if got := redactBody("application/fhir+json; charset=utf-8", []byte(body), m); got != body {
			t.Errorf("redactBody(%s) = %s, want it unchanged", body, got)
		}
	}
}

// TestRedactBodyRedactsTopLevelSecrets: a top-level secret member is
// redacted however it is written, and its JWT claims kept.
func TestRedactBodyRedactsTopLevelSecrets(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6InBhdGllbnQvKi5ycyJ9.c2VjcmV0LXNpZ25hdHVyZQ"
	for _, body := range []string{
		`{"access_token":"` + jwt + `","token_type":"Bearer"}`,
		`{"token_type":"Bearer", "access_token" : "` + jwt + `"}`,
		`{"access\u005ftoken":"` + jwt + `"}`,
		`{"nested":{"a":[1,{"b":"}"}]},"access_token":"` + jwt + `"}`,
	} {
		m := &Message{}
		got := redactBody("application/json", []byte(body), m)
		if strings.Contains(got, "c2VjcmV0LXNpZ25hdHVyZQ") || !strings.Contains(got, Redacted) {
			t.Errorf("redactBody(%s) = %s", body, got)
		}
		if c, _ := m.Claims["access_token"].(map[string]any); c["scope"] != "patient/*.rs" {
			t.Errorf("claims of %s: %v", body, m.Claims)
		}
	}
}

// TestRedactBodyDropsWhatItCannotRead: bodies that are not JSON, or that
// carry something after or inside the object the scan cannot follow, never
// keep a top-level secret.
func TestRedactBodyDropsWhatItCannotRead(t *testing.T) {
	for _, body := range []string{
		`{"a":1} {"access_token":"s3cret-value"}`,
		`{"a":"unterminated, "access_token":"s3cret-value"`,
		`{"a" "access_token" "s3cret-value"}`,
		`{"access_token":"s3cret-value"`,
		`not json s3cret-value`,
	} {
		if got := redactBody("application/json", []byte(body), &Message{}); strings.Contains(got, "s3cret-value") {
			t.Errorf("redactBody(%s) = %s: secret kept", body, got)
		}
	}
	if got := redactBody("application/json", []byte(`[1,2]`), &Message{}); got != `[1,2]` {
		t.Errorf("array: %s", got)
	}
}

// TestBearerClaimsCached: the claims of a bearer token are decoded once
// and the cache keeps no signature.
func TestBearerClaimsCached(t *testing.T) {
	c := &claimsCache{max: 2}
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
	a, b := c.get(jwt), c.get(jwt+"-other-signature")
	if a == nil || a["sub"] != "u1" || len(a) != len(b) {
		t.Fatalf("claims %v %v", a, b)
	}
	for k := range c.m {
		if strings.Contains(k, "c2lnbmF0dXJl") {
			t.Errorf("cache key %q holds the signature", k)
		}
	}
	if c.get("not-a-jwt") != nil || c.get("a.b.c") != nil || len(c.m) != 1 {
		t.Errorf("non-JWTs remembered: %v", c.m)
	}
	for _, sub := range []string{"eyJzdWIiOiJ1MiJ9", "eyJzdWIiOiJ1MyJ9"} {
		c.get("eyJhbGciOiJIUzI1NiJ9." + sub + ".c2ln")
	}
	if len(c.m) > c.max {
		t.Errorf("cache holds %d entries, max %d", len(c.m), c.max)
	}
}

// FuzzRedactBody: whatever the body, a string value of a top-level secret
// member (as encoding/json reads the body) never survives redaction.
func FuzzRedactBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		got := redactBody("application/json", body, &Message{})
		var obj map[string]any
		if json.Unmarshal(body, &obj) != nil {
			return
		}
		for k, v := range obj {
			s, ok := v.(string)
			if !ok || !secretParams[k] || len(s) < 6 || bytes.Count(body, []byte(s)) != 1 || strings.Contains(Redacted, s) {
				continue
			}
			if strings.Contains(got, s) {
				t.Fatalf("secret %q of %q kept: %s", k, body, got)
			}
		}
	})
}
