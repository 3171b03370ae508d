package otheras_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/otheras"
)

func postJSONForm(t *testing.T, u string, v url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// standaloneCode runs a standalone launch at OtherAS up to the callback.
func standaloneCode(t *testing.T, w *world, cfg *oauth2.Config, v string) *url.URL {
	t.Helper()
	b := browser.New(nil, appCB)
	return walk(t, b, w.otherAuthorize(t, b, cfg, v, ""), "doc", "o-grace", "approve", nil)
}

// A client without the refresh_token grant gets no refresh token and
// cannot use the grant; openid alone yields an id_token.
func TestOtherRefreshGrantEnforcedAndIDToken(t *testing.T) {
	w := newWorld(t, nil)
	cfg := w.otherOAuth("evil-other", "openid", "patient/*.rs", "launch/patient", "offline_access")
	v := oauth2.GenerateVerifier()
	tok, err := cfg.Exchange(context.Background(), standaloneCode(t, w, cfg, v).Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" || strings.Contains(tok.Extra("scope").(string), "offline_access") {
		t.Errorf("refresh token without the grant: %q %v", tok.RefreshToken, tok.Extra("scope"))
	}
	if id, _ := tok.Extra("id_token").(string); id == "" {
		t.Error("openid granted but no id_token")
	}
	if st, m := postJSONForm(t, w.otherCfg.Issuer+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"evil-other"}}); st != 400 || m["error"] != "unauthorized_client" {
		t.Errorf("refresh without grant: %d %v", st, m)
	}
	// A client with the grant keeps refreshing.
	cfg = w.otherOAuth("app-other", "openid", "patient/*.rs", "launch/patient", "offline_access")
	tok, err = cfg.Exchange(context.Background(), standaloneCode(t, w, cfg, v).Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if st, m := postJSONForm(t, w.otherCfg.Issuer+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app-other"}}); st != 200 || m["refresh_token"] == nil {
		t.Errorf("refresh with grant: %d %v", st, m)
	}
}

// Concurrent uses of one code: one wins, and its token is revoked.
func TestOtherCodeReplayRace(t *testing.T) {
	w := newWorld(t, nil)
	cfg := w.otherOAuth("app-other", "openid", "patient/*.rs", "launch/patient")
	for i := 0; i < 3; i++ {
		v := oauth2.GenerateVerifier()
		cb := standaloneCode(t, w, cfg, v)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {appCB}, "code_verifier": {v}, "client_id": {"app-other"}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var tokens []string
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, m := postJSONForm(t, w.otherCfg.Issuer+"/token", form)
				if st == 200 {
					mu.Lock()
					tokens = append(tokens, m["access_token"].(string))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(tokens) != 1 {
			t.Fatalf("winners %d", len(tokens))
		}
		if _, err := w.other.VerifyAccess(context.Background(), tokens[0]); err == nil {
			t.Fatal("token of a replayed code is valid")
		}
	}
}

// Open registration creates no Backend Services client and caps scopes.
func TestOtherRegistrationLimits(t *testing.T) {
	w := newWorld(t, nil)
	reg := func(body string) (int, map[string]any) {
		resp, err := http.Post(w.otherCfg.Issuer+"/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if st, m := reg(`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks_uri":"http://app.test/jwks"}`); st != 400 || m["error"] != "invalid_client_metadata" {
		t.Errorf("client_credentials: %d %v", st, m)
	}
	if st, m := reg(`{"redirect_uris":["` + appCB + `"],"token_endpoint_auth_method":"none","scope":"openid system/*.rs"}`); st != 400 || m["error"] != "invalid_client_metadata" {
		t.Errorf("system scope: %d %v", st, m)
	}
	if st, m := reg(`{"redirect_uris":["` + appCB + `"],"token_endpoint_auth_method":"none"}`); st != 201 || m["scope"] != otheras.RegistrationCeiling {
		t.Errorf("ceiling: %d %v", st, m)
	}
}
