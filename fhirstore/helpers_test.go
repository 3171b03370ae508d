package fhirstore

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type testServer struct {
	*httptest.Server
	store *Store
	base  string
}

func openTestStore(tb testing.TB, base string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), Options{Path: filepath.Join(tb.TempDir(), "fhir.db"), BaseURL: base})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func newTestServer(tb testing.TB, tweak func(*HandlerConfig)) *testServer {
	tb.Helper()
	var h http.Handler
	var once sync.Once
	ready := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(ts.Close)
	base := ts.URL + "/fhir"
	s := openTestStore(tb, base)
	cfg := HandlerConfig{Store: s, BaseURL: base, Logger: slog.New(slog.NewTextHandler(tb.Output(), nil))}
	if tweak != nil {
		tweak(&cfg)
	}
	h = NewHandler(cfg)
	once.Do(func() { close(ready) })
	return &testServer{Server: ts, store: s, base: base}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("response is not JSON (%d): %v: %s", r.status, err, r.body)
	}
	return m
}

func (ts *testServer) do(tb testing.TB, method, path string, body string, hdr ...string) *response {
	tb.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = ts.base + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (ts *testServer) mustStatus(tb testing.TB, want int, method, path, body string, hdr ...string) *response {
	tb.Helper()
	r := ts.do(tb, method, path, body, hdr...)
	if r.status != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// bundleIDs returns the ids of the match entries of a Bundle.
func bundleIDs(tb testing.TB, r *response) []string {
	tb.Helper()
	m := r.json(tb)
	var ids []string
	entries, _ := m["entry"].([]any)
	for _, e := range entries {
		em := e.(map[string]any)
		if s, _ := em["search"].(map[string]any); s != nil && s["mode"] != "match" {
			continue
		}
		res := em["resource"].(map[string]any)
		ids = append(ids, res["id"].(string))
	}
	return ids
}

func nextLink(tb testing.TB, r *response) string {
	tb.Helper()
	links, _ := r.json(tb)["link"].([]any)
	for _, l := range links {
		lm := l.(map[string]any)
		if lm["relation"] == "next" {
			return lm["url"].(string)
		}
	}
	return ""
}

func rawList(docs ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(docs))
	for i, d := range docs {
		out[i] = json.RawMessage(d)
	}
	return out
}

// testGrant is a Grant for tests: a patient (or none) and the types and
// interactions it allows ("*" for all).
type testGrant struct {
	patient string
	allow   map[string]bool // "Type.interaction", "Type.*" or "*"
}

func (g testGrant) Patient() string { return g.patient }
func (g testGrant) Allows(rt string, in Interaction, _ url.Values) bool {
	return g.allow["*"] || g.allow[rt+".*"] || g.allow[rt+"."+string(in)]
}

type testVerifier map[string]Grant

func (v testVerifier) Verify(_ context.Context, bearer string) (Grant, error) {
	if g, ok := v[bearer]; ok {
		return g, nil
	}
	return nil, io.EOF
}

var fixedNow = func() time.Time { return time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC) }

func runtimeGosched() { time.Sleep(time.Millisecond) }
