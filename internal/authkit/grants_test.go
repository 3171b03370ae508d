package authkit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCodesRedeemOnceAndReplay(t *testing.T) {
	ctx := t.Context()
	ck := &testClock{now: time.Unix(1_700_000_000, 0)}
	codes := NewCodes(NewMemStore(ck.Now), time.Minute, ck.Now)
	type rec struct{ Client string }
	code, err := codes.Issue(ctx, rec{Client: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var got rec
	var replayed []CodeUse
	onReplay := func(first CodeUse) { replayed = append(replayed, first) }
	use, err := codes.Redeem(ctx, code, &got, onReplay)
	if err != nil || got.Client != "app" {
		t.Fatalf("first redeem: %v %+v", err, got)
	}
	ids := []string{use.Family, use.JTI, use.LaunchJTI}
	for i, id := range ids {
		if len(id) != len(RandomString(16)) || slices.Index(ids, id) != i {
			t.Fatalf("the use's ids %q: want three distinct ones as long as RandomString(16)", ids)
		}
	}
	again, err := codes.Redeem(ctx, code, &got, onReplay)
	if !errors.Is(err, ErrInvalidGrant) || again != (CodeUse{}) || len(replayed) != 1 || replayed[0] != use {
		t.Fatalf("replay: %v, answered %+v, revoking %+v; the first use issued %+v", err, again, replayed, use)
	}
	// Another code, and the same code at another server, name other ids.
	other, _ := codes.Issue(ctx, rec{})
	if u, err := codes.Redeem(ctx, other, &got, onReplay); err != nil || u.Family == use.Family || u.JTI == use.JTI {
		t.Fatalf("another code: %+v %v, first %+v", u, err, use)
	}
	elsewhere := NewCodes(NewMemStore(ck.Now), time.Minute, ck.Now)
	if err := elsewhere.store.Put(ctx, codeBucket, Hash(code), []byte(`{}`), ck.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if u, err := elsewhere.Redeem(ctx, code, &got, nil); err != nil || u.Family == use.Family || u.JTI == use.JTI || u.LaunchJTI == use.LaunchJTI {
		t.Fatalf("the same code at another server: %+v %v, first %+v", u, err, use)
	}
	// An unknown code leaves no mark: nothing was issued.
	for range 2 {
		if _, err := codes.Redeem(ctx, "nope", &got, onReplay); !errors.Is(err, ErrInvalidGrant) || len(replayed) != 1 {
			t.Fatalf("unknown code: %v, %d replays", err, len(replayed))
		}
	}
	// Expired.
	late, _ := codes.Issue(ctx, rec{})
	ck.Add(2 * time.Minute)
	if _, err := codes.Redeem(ctx, late, &got, nil); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("expired code: %v", err)
	}
}

func TestCodesConcurrentRedeem(t *testing.T) {
	ctx := t.Context()
	codes := NewCodes(NewMemStore(nil), time.Minute, time.Now)
	code, _ := codes.Issue(ctx, map[string]string{"a": "b"})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []CodeUse
	var replayed []CodeUse
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v map[string]string
			use, err := codes.Redeem(ctx, code, &v, func(first CodeUse) { mu.Lock(); replayed = append(replayed, first); mu.Unlock() })
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, use)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || len(replayed) != 7 {
		t.Fatalf("%d redeemed, %d replays: want 1 and 7", len(won), len(replayed))
	}
	for _, r := range replayed {
		if r != won[0] {
			t.Fatalf("a replay would revoke %+v, the use issued %+v", r, won[0])
		}
	}
}

func newFamilies(t *testing.T, store Store, now func() time.Time) *RefreshFamilies {
	t.Helper()
	rev := &Revocations{Store: store, FamilyTTL: time.Hour, Now: now}
	if err := rev.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &RefreshFamilies{Store: store, Revocations: rev, Life: time.Hour, Now: now}
}

type testGrant struct {
	ClientID string `json:"client_id"`
	Scopes   string `json:"scopes"`
	Family   string `json:"family"`
	Extra    string `json:"extra"`
}

func TestRefreshRotationAndReuse(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore(nil)
	f := newFamilies(t, store, time.Now)
	rt, err := f.Issue(ctx, testGrant{ClientID: "app", Scopes: "openid", Family: "fam1", Extra: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Redeem(ctx, rt, "other"); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("another client's token: %v", err)
	}
	r, err := f.Redeem(ctx, rt, "app")
	if err != nil {
		t.Fatal(err)
	}
	var g testGrant
	if json.Unmarshal(r.Record, &g) != nil || g.Extra != "x" || r.Family != "fam1" {
		t.Fatalf("record %s", r.Record)
	}
	// A lookup changes nothing until Rotate.
	if _, ok := f.Active(ctx, rt, "app"); !ok {
		t.Fatal("token inactive before rotation")
	}
	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	// A racing second rotation of the same lookup conflicts: family revoked.
	if err := r.Rotate(ctx); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("second rotate: %v", err)
	}
	if !f.Revocations.FamilyRevoked("fam1") || !f.Revocations.Revoked("any-jti", "fam1") {
		t.Fatal("family not revoked after a double use")
	}
	if f.Introspect(ctx, rt, "app", "iss")["active"] != false {
		t.Fatal("used token introspects active")
	}

	// Reuse of a rotated token revokes its family.
	rt2, _ := f.Issue(ctx, testGrant{ClientID: "app", Family: "fam2"})
	r2, _ := f.Redeem(ctx, rt2, "app")
	if err := r2.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Redeem(ctx, rt2, "app"); !errors.Is(err, ErrInvalidGrant) || !f.Revocations.FamilyRevoked("fam2") {
		t.Fatalf("reuse: %v, family revoked %v", err, f.Revocations.FamilyRevoked("fam2"))
	}

	// Revocations persist in the store.
	again := newFamilies(t, store, time.Now)
	if !again.Revocations.FamilyRevoked("fam2") {
		t.Fatal("revocation lost on reload")
	}

	// RFC 7009: another client's revocation leaves the token alone.
	rt3, _ := f.Issue(ctx, testGrant{ClientID: "app", Scopes: "openid", Family: "fam3"})
	f.Revoke(ctx, rt3, "other")
	if got := f.Introspect(ctx, rt3, "app", "iss"); got["active"] != true || got["scope"] != "openid" || got["iss"] != "iss" {
		t.Fatalf("introspect: %v", got)
	}
	f.Revoke(ctx, rt3, "app")
	if _, err := f.Redeem(ctx, rt3, "app"); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("revoked token redeemed: %v", err)
	}
}

func TestDownScope(t *testing.T) {
	for _, tc := range []struct {
		grant, asked, want string
		err                bool
	}{
		{"openid patient/*.rs", "", "openid patient/*.rs", false},
		{"openid patient/*.rs", "patient/*.rs", "patient/*.rs", false},
		{"openid", "openid user/*.rs", "", true},
		{"openid", "patient/Observation.zz", "", true},
	} {
		got, err := DownScope(tc.grant, tc.asked)
		if (err != nil) != tc.err || err == nil && got.String() != tc.want {
			t.Errorf("DownScope(%q, %q) = %v, %v", tc.grant, tc.asked, got, err)
		}
	}
}

type testRequest struct {
	Binding
	Step string `json:"step"`
}

// TestPendingRequestsOverHTTP: a request opens only in the browser that
// started it, and a POST needs the form's csrf.
func TestPendingRequestsOverHTTP(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore(nil)
	sessions := &Sessions{Store: store, Cookie: "sim_test_session", Issuer: "http://127.0.0.1/auth", Life: time.Hour, Now: time.Now}
	pending := &PendingRequests{Store: store, Sessions: sessions}
	sess := &Session{ID: RandomString(24), Username: "doc", AuthTime: 1}
	if err := sessions.Save(ctx, sess); err != nil {
		t.Fatal(err)
	}
	req := &testRequest{Binding: Binding{ID: "r1", Session: sess.ID, CSRF: "tok", Expires: time.Now().Add(time.Minute)}, Step: "login"}
	if err := pending.Save(ctx, req); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			sessions.SetCookie(w, sess.ID)
			return
		}
		var got testRequest
		if _, perr := pending.Open(r, &got); perr != nil {
			http.Error(w, perr.Heading, perr.Status)
			return
		}
		if s, ok := sessions.Load(r.Context(), r); !ok || s.Username != "doc" {
			http.Error(w, "no session", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(got.Step))
	}))
	defer ts.Close()

	do := func(method, path string, form url.Values, cookie string) (int, string) {
		t.Helper()
		r, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "sim_test_session", Value: cookie})
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	resp, err := http.Get(ts.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Cookies(); len(c) != 1 || c[0].Value != sess.ID || !c[0].HttpOnly || c[0].Path != "/auth" || c[0].SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie %+v", resp.Cookies())
	}
	for _, tc := range []struct {
		name, method, query string
		form                url.Values
		cookie              string
		want                int
	}{
		{"GET in the right browser", http.MethodGet, "?req=r1", nil, sess.ID, 200},
		{"POST with csrf", http.MethodPost, "?req=r1", url.Values{"csrf": {"tok"}}, sess.ID, 200},
		{"POST without csrf", http.MethodPost, "?req=r1", url.Values{}, sess.ID, 403},
		{"another browser", http.MethodGet, "?req=r1", nil, "other", 403},
		{"no cookie", http.MethodGet, "?req=r1", nil, "", 403},
		{"unknown request", http.MethodGet, "?req=r2", nil, sess.ID, 400},
		{"PUT", http.MethodPut, "?req=r1", nil, sess.ID, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, body := do(tc.method, "/page"+tc.query, tc.form, tc.cookie); st != tc.want || st == 200 && body != "login" {
				t.Errorf("status %d body %q, want %d", st, body, tc.want)
			}
		})
	}
	pending.Delete(ctx, "r1")
	if st, _ := do(http.MethodGet, "/page?req=r1", nil, sess.ID); st != 400 {
		t.Errorf("deleted request opens: %d", st)
	}
}

func TestTokenEndpoint(t *testing.T) {
	reg, err := NewRegistry(t.Context(), NewMemStore(nil), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Put(t.Context(), Client{ID: "app", AuthMethod: AuthNone, RedirectURIs: []string{"http://app.test/cb"}, GrantTypes: []string{GrantAuthorizationCode}}); err != nil {
		t.Fatal(err)
	}
	te := &TokenEndpoint{Auth: &ClientAuthenticator{Registry: reg, Replay: NewMemStore(nil)}, Repeatable: []string{"resource"}, Grants: map[string]Grant{
		GrantAuthorizationCode: func(ctx context.Context, c *Client, form url.Values) (any, error) {
			if form.Get("code") == "boom" {
				return nil, errors.New("internal detail")
			}
			return map[string]any{"access_token": "at", "resources": len(form["resource"]), "client": c.ID}, nil
		},
	}}
	ts := httptest.NewServer(te)
	defer ts.Close()
	for _, tc := range []struct {
		name string
		form url.Values
		want int
		body string
	}{
		{"grant", url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "resource": {"a", "b"}}, 200, `"resources":2`},
		{"no grant_type", url.Values{"client_id": {"app"}}, 400, "invalid_request"},
		{"unknown grant_type", url.Values{"grant_type": {"password"}, "client_id": {"app"}}, 400, "unsupported_grant_type"},
		{"unknown client", url.Values{"grant_type": {"authorization_code"}, "client_id": {"nobody"}}, 401, "invalid_client"},
		{"server error hides detail", url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {"boom"}}, 500, "server_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.PostForm(ts.URL, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			buf := make([]byte, 1024)
			n, _ := resp.Body.Read(buf)
			b.Write(buf[:n])
			if resp.StatusCode != tc.want || !strings.Contains(b.String(), tc.body) || strings.Contains(b.String(), "internal detail") {
				t.Errorf("status %d body %s, want %d with %s", resp.StatusCode, b.String(), tc.want, tc.body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("token answer is cacheable")
			}
		})
	}
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestPathOfAndEndpoints(t *testing.T) {
	for in, want := range map[string]string{"http://h:1/auth": "/auth", "http://h:1/a/b/": "/a/b", "http://h:1": "", "/x": "/x"} {
		if got := PathOf(in); got != want {
			t.Errorf("PathOf(%q) = %q, want %q", in, got, want)
		}
	}
	m := Metadata{Issuer: "http://h/auth", Capabilities: []string{"launch-ehr"}}
	if d := m.SMARTConfiguration(); d["token_endpoint"] != EndpointsOf(m.Issuer).Token || d["jwks_uri"] != "http://h/auth/jwks" {
		t.Errorf("smart configuration %v", d)
	}
	if d := m.OpenIDConfiguration(); d["issuer"] != m.Issuer || d["capabilities"] != nil {
		t.Errorf("openid configuration %v", d)
	}
}
