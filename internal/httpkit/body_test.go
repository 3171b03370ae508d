package httpkit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/smart-sim/sim/internal/httpkit"
)

// ReadBody reads whole bodies, with and without a Content-Length, and
// stops at its limit.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("0123456789", 10_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		for i := 0; i < len(body); i += 1000 {
			fmt.Fprint(w, body[i:i+1000])
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	for _, c := range []struct {
		path  string
		limit int64
		want  string
	}{
		{"/sized", 1 << 20, body},
		{"/chunked", 1 << 20, body},
		{"/sized", 12_345, body[:12_345]},
		{"/chunked", 12_345, body[:12_345]},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := httpkit.ReadBody(resp, c.limit)
		resp.Body.Close()
		if err != nil || string(b) != c.want {
			t.Errorf("%s, limit %d: %d bytes, %v; want %d", c.path, c.limit, len(b), err, len(c.want))
		}
	}
}
