package browser_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/smart-sim/sim/internal/browser"
)

const appCB = "http://app.test/cb"

// signInServer serves a login page, a patient picker (with a GET search
// form before the POST one) and a consent page; the session is a cookie.
// Consent redirects to the app with what was chosen.
func signInServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>t</title>%s", body)
	}
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		page(w, `<form method="post" action="/login"><input name="username"><input type="password" name="password"><button>Sign in</button></form>`)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("username") != "doc" || r.PostFormValue("password") != "pw-doc" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "doc", Path: "/"})
		http.Redirect(w, r, "/pick", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /pick", func(w http.ResponseWriter, r *http.Request) {
		page(w, `<form method="get" action="/pick"><input name="q"><input type="hidden" name="patient" value="search"></form>
<form method="post" action="/pick"><input type="radio" name="patient" value="p1" checked><input type="radio" name="patient" value="p2"><button name="step" value="patient">Go</button></form>`)
	})
	mux.HandleFunc("POST /pick", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/consent?patient="+url.QueryEscape(r.PostFormValue("patient")), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		page(w, `<form method="post" action="/consent?patient=`+url.QueryEscape(r.URL.Query().Get("patient"))+`">
<button name="decision" value="approve">Allow</button><button name="decision" value="deny">Deny</button></form>`)
	})
	mux.HandleFunc("POST /consent", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("sid")
		if err != nil {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		q := url.Values{"user": {c.Value}, "patient": {r.URL.Query().Get("patient")}, "decision": {r.PostFormValue("decision")}}
		http.Redirect(w, r, appCB+"?"+q.Encode(), http.StatusFound)
	})
	mux.HandleFunc("GET /loop", func(w http.ResponseWriter, r *http.Request) {
		page(w, `<form method="post" action="/loop2"><button name="decision" value="approve">Again</button></form>`)
	})
	mux.HandleFunc("POST /loop2", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusSeeOther)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// open navigates b to u.
func open(t *testing.T, b *browser.Browser, u string) *browser.Page {
	t.Helper()
	page, err := b.Get(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

func steps(user, patient, decision string, seen func(*browser.Page)) []browser.Step {
	return []browser.Step{
		{Field: "password", Submit: browser.Submit{Set: map[string]string{"username": user, "password": "pw-" + user}}},
		{Field: "patient", Submit: browser.Submit{Set: map[string]string{"patient": patient}}},
		{Field: "decision", Submit: browser.Submit{Button: "decision=" + decision}, Seen: seen},
	}
}

func TestHasPostField(t *testing.T) {
	srv := signInServer(t)
	b := browser.New(nil, appCB)
	login := open(t, b, srv.URL+"/login")
	if !login.HasPostField("password") || login.HasPostField("decision") || login.HasPostField("") {
		t.Fatalf("login page: password %v, decision %v", login.HasPostField("password"), login.HasPostField("decision"))
	}
	pick := open(t, b, srv.URL+"/pick")
	if pick.HasPostField("q") {
		t.Fatal("a field of the GET search form counts as a POST field")
	}
	if !pick.HasPostField("step") {
		t.Fatal("a submit button of the POST form does not count")
	}
	f, ok := pick.PostFormWith("patient")
	if !ok || f.Method != http.MethodPost || f != &pick.Forms[1] {
		t.Fatalf("PostFormWith(patient) = %+v, %v; want the second (POST) form", f, ok)
	}
	if g, _ := pick.FormWith("patient"); g != &pick.Forms[0] {
		t.Fatal("FormWith no longer returns the first form with the field")
	}
}

func TestWalkToApp(t *testing.T) {
	srv := signInServer(t)
	b := browser.New(nil, appCB)
	page := open(t, b, srv.URL+"/login")
	var consent *browser.Page
	end, err := b.Walk(t.Context(), page, steps("doc", "p2", "deny", func(p *browser.Page) { consent = p })...)
	if err != nil {
		t.Fatal(err)
	}
	if end.Redirect == nil {
		t.Fatalf("no redirect: %s", end.URL)
	}
	q := end.Redirect.Query()
	if got := end.Redirect.Scheme + "://" + end.Redirect.Host + end.Redirect.Path; got != appCB {
		t.Fatalf("stopped at %s, want %s", got, appCB)
	}
	if q.Get("user") != "doc" || q.Get("patient") != "p2" || q.Get("decision") != "deny" {
		t.Fatalf("callback %s: want user doc, patient p2, decision deny", end.Redirect.RawQuery)
	}
	if consent == nil || !consent.HasPostField("decision") || consent.URL.Path != "/consent" {
		t.Fatalf("Seen got %+v, want the consent page", consent)
	}
}

func TestWalkAlreadyRedirected(t *testing.T) {
	b := browser.New(nil, appCB)
	start := &browser.Page{Redirect: &url.URL{Scheme: "http", Host: "app.test", Path: "/cb"}}
	end, err := b.Walk(t.Context(), start)
	if err != nil || end != start {
		t.Fatalf("Walk on a redirect = %v, %v; want the same page, no error", end, err)
	}
}

func TestWalkStuck(t *testing.T) {
	srv := signInServer(t)
	b := browser.New(nil, appCB)
	page := open(t, b, srv.URL+"/login")
	// With no step for the login page the walk is stuck on it at once.
	end, err := b.Walk(t.Context(), page, browser.Step{Field: "decision"})
	if !errors.Is(err, browser.ErrStuck) || end != page {
		t.Fatalf("Walk with no matching step = %v, %v; want ErrStuck on the login page", end, err)
	}
}

func TestWalkGivesUp(t *testing.T) {
	srv := signInServer(t)
	b := browser.New(nil, appCB)
	b.MaxForms = 3
	page := open(t, b, srv.URL+"/loop")
	end, err := b.Walk(t.Context(), page, steps("doc", "p1", "approve", nil)...)
	if !errors.Is(err, browser.ErrNoRedirect) || end.Redirect != nil || end.URL.Path != "/loop" {
		t.Fatalf("Walk round a loop = %+v, %v; want ErrNoRedirect", end, err)
	}
	// A wrong password loops on the login page the same way.
	login := open(t, b, srv.URL+"/login")
	bad := []browser.Step{{Field: "password", Submit: browser.Submit{Set: map[string]string{"username": "doc", "password": "wrong"}}}}
	if _, err := b.Walk(t.Context(), login, bad...); !errors.Is(err, browser.ErrNoRedirect) {
		t.Fatalf("Walk with a wrong password: %v, want ErrNoRedirect", err)
	}
}
