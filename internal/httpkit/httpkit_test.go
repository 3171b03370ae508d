package httpkit_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/httpkit"
)

func TestServeGracefulAndMiddleware(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		if httpkit.RequestID(r.Context()) == "" {
			t.Error("no request id in context")
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpkit.Serve(ctx, ln, httpkit.CORS(httpkit.Wrap("t", nil, mux)), nil, 2*time.Second) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/ok")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /ok: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/panic")
	if err != nil || resp.StatusCode != 500 {
		t.Fatalf("GET /panic: %v, want a 500", err)
	}
	resp.Body.Close()

	req, _ := http.NewRequest(http.MethodOptions, base+"/ok", nil)
	req.Header.Set("Origin", "http://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "authorization" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// TestWrapRequestIDsAndAccessLog: every request gets its own ID, and the
// debug access log names the path but never the query.
func TestWrapRequestIDsAndAccessLog(t *testing.T) {
	var mu sync.Mutex
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logged}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ids := map[string]bool{}
	srv := httptest.NewServer(httpkit.Wrap("t", logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids[httpkit.RequestID(r.Context())] = true
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	})))
	defer srv.Close()
	for range 20 {
		resp, err := http.Get(srv.URL + "/ok?code=secret-code-value")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 20 || ids[""] {
		t.Fatalf("%d distinct request ids for 20 requests: %v", len(ids), ids)
	}
	out := logged.String()
	if strings.Count(out, "path=/ok") != 20 || !strings.Contains(out, "status=418") || strings.Contains(out, "secret-code-value") {
		t.Fatalf("access log:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
