package authkit

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSameBase(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"http://h/fhir", "http://h/fhir/", true},
		{"http://h/fhir/", "http://h/fhir", true},
		{"http://h/fhir", "http://h/fhir2", false},
		{"http://h/fhir", "http://h/", false},
	} {
		if got := SameBase(c.a, c.b); got != c.want {
			t.Errorf("SameBase(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Unix(1_700_000_000, 0) }
	for _, path := range []string{"", filepath.Join(t.TempDir(), "as.db")} {
		db, st, err := OpenStore(ctx, path, now)
		if err != nil {
			t.Fatalf("OpenStore(%q): %v", path, err)
		}
		if (db == nil) != (path == "") {
			t.Errorf("OpenStore(%q): db = %v", path, db)
		}
		if err := st.Put(ctx, "b", "k", []byte("v"), now().Add(time.Hour)); err != nil {
			t.Fatalf("put: %v", err)
		}
		if v, err := st.Get(ctx, "b", "k"); err != nil || string(v) != "v" {
			t.Errorf("get = %q, %v", v, err)
		}
		if db != nil {
			if err := db.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	if _, _, err := OpenStore(ctx, filepath.Join(t.TempDir(), "missing", "as.db"), now); err == nil {
		t.Error("OpenStore in a missing directory succeeded")
	}
}

func TestPagesShow(t *testing.T) {
	p, err := LoadPages("Test EHR", "/auth/static", []string{"http://frame.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Common("Sign in"); c.Title != "Sign in" || c.Product != "Test EHR" || c.StaticURL != "/auth/static" {
		t.Errorf("Common = %+v", c)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Show(w, r, &PageError{Status: http.StatusMethodNotAllowed, Heading: "Wrong method", Message: "Use GET or POST."})
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
		t.Errorf("status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for _, want := range []string{"Wrong method", "Use GET or POST.", "Test EHR", "/auth/static"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("error page lacks %q", want)
		}
	}
}
