package otheras_test

import (
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/otheras"
)

// N second launches, each in a new browser, leave O(1) entries in
// OtherAS's memory once their lifetimes have passed: the sessions that
// only bind a request to the browser live as long as the request, the
// used-code markers as long as a code, the launch-token marks as long as
// the token. A real sign-in keeps its session for the sign-in lifetime.
func TestAuthorizationsLeaveNoEntriesBehind(t *testing.T) {
	w := newWorld(t, nil)
	const n = 10
	for range n {
		if tok, cb := w.secondLaunch(t, w.ehrLaunch(t, "p-shared"), "app-other", "approve", nil, fullScopes...); tok == nil {
			t.Fatalf("second launch refused: %s", cb.RawQuery)
		}
	}
	// One real sign-in (standalone).
	std := w.otherOAuth("app-other", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	signedIn := browser.New(nil, appCB)
	v := oauth2.GenerateVerifier()
	cb := walk(t, signedIn, w.otherAuthorize(t, signedIn, std, v, ""), "doc", "o-grace", "approve", nil)
	if cb.Query().Get("code") == "" {
		t.Fatalf("standalone launch: %s", cb.RawQuery)
	}
	if held := otheras.EphemeralLen(w.other); held < 3*n {
		t.Fatalf("%d entries held after %d launches: they should leave markers until they expire", held, n)
	}
	// Every launch-token was checked with the EHR's one key: one verifier.
	if keys := otheras.VerificationKeys(w.other); keys != 1 {
		t.Errorf("%d signature verifiers kept after %d launch-tokens of one EHR key, want 1", keys, n)
	}

	// Past a pending request's lifetime (15 min); the next write purges.
	w.clock.Add(16 * time.Minute)
	if page := w.otherAuthorize(t, browser.New(nil, appCB), std, v, ""); !hasForm(page, "password") {
		t.Fatalf("a new browser is not asked to sign in: %s", page.URL)
	}
	// Left: the sign-in session (its code is gone, its marker expired),
	// and the new browser's session and request.
	if held := otheras.EphemeralLen(w.other); held > 3 {
		t.Errorf("%d entries held after %d launches and 16 minutes, want at most 3", held, n)
	}
	if page := w.otherAuthorize(t, signedIn, std, v, ""); hasForm(page, "password") {
		t.Error("the sign-in ended with the request lifetime")
	}

	// Past the sign-in lifetime (8 h): only what the last write made.
	w.clock.Add(8 * time.Hour)
	if page := w.otherAuthorize(t, signedIn, std, v, ""); !hasForm(page, "password") {
		t.Error("the sign-in outlived its lifetime")
	}
	if held := otheras.EphemeralLen(w.other); held > 2 {
		t.Errorf("%d entries held after 8 hours, want at most 2", held)
	}
}
