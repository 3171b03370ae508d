package httpkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request ID that Wrap attached to ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestIDs makes request IDs: a random per-process prefix and a counter.
// They correlate log lines, they are not secrets, so a counter serves and
// saves a call into the system's random source per request.
var requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func init() {
	var b [4]byte
	_, _ = rand.Read(b[:])
	requestIDs.prefix = hex.EncodeToString(b[:]) + "-"
}

func newRequestID() string {
	var buf [32]byte
	b := append(buf[:0], requestIDs.prefix...)
	return string(strconv.AppendUint(b, requestIDs.n.Add(1), 36))
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Wrap adds a request ID, recovers panics as a bare 500, and logs each
// request at debug level (method, path without query, status, duration).
// Query strings are never logged: they carry codes and tokens.
func Wrap(name string, logger *slog.Logger, next http.Handler) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.ErrorContext(ctx, "panic serving request", "server", name, "request_id", id, "path", r.URL.Path, "panic", p)
				if !sw.wrote {
					http.Error(sw, "internal server error", http.StatusInternalServerError)
				}
			}
			if logger.Enabled(ctx, slog.LevelDebug) {
				logger.LogAttrs(ctx, slog.LevelDebug, "request", slog.String("server", name), slog.String("request_id", id),
					slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", sw.status),
					slog.Duration("duration", time.Since(start)))
			}
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// NoStore marks a response as never to be cached (token responses and their
// errors, RFC 6749 §5.1).
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// CORS lets browser apps on any origin call the wrapped API without
// credentials (cookies are never sent cross-origin this way), and answers
// preflight requests, allowing the Authorization header.
func CORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Location, ETag, Last-Modified, Content-Location, WWW-Authenticate")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
			allow := "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist"
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && !strings.ContainsAny(req, "\r\n") {
				allow = req
			}
			h.Set("Access-Control-Allow-Headers", allow)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
