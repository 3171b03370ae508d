package authkit

import (
	"io"
	"mime"
	"net/http"
	"net/url"
)

// MaxFormBytes bounds request bodies at OAuth endpoints.
const MaxFormBytes = 64 << 10

// ParseForm reads an application/x-www-form-urlencoded body (POST) or the
// query (GET when allowGet). Repeated parameters are refused (RFC 6749
// §3.1, §3.2) except those named in repeatable (e.g. "resource").
func ParseForm(r *http.Request, allowGet bool, repeatable ...string) (url.Values, error) {
	var raw string
	switch r.Method {
	case http.MethodPost:
		ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || ct != "application/x-www-form-urlencoded" {
			return nil, ErrInvalidRequest.With("body must be application/x-www-form-urlencoded")
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxFormBytes+1))
		if err != nil {
			return nil, ErrInvalidRequest.With("unreadable body")
		}
		if len(b) > MaxFormBytes {
			return nil, ErrInvalidRequest.With("body too large")
		}
		raw = string(b)
	case http.MethodGet:
		if !allowGet {
			return nil, ErrInvalidRequest.With("use POST")
		}
		raw = r.URL.RawQuery
	default:
		return nil, ErrInvalidRequest.With("method not allowed")
	}
	return ParseValues(raw, repeatable...)
}

// ParseValues parses a urlencoded string with ParseForm's rules.
func ParseValues(raw string, repeatable ...string) (url.Values, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, ErrInvalidRequest.With("malformed form encoding")
	}
	for k, vs := range v {
		if len(vs) > 1 && !contains(repeatable, k) {
			return nil, ErrInvalidRequest.With("parameter " + safeName(k) + " repeated")
		}
	}
	return v, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// safeName keeps a parameter name printable and short for error text.
func safeName(k string) string {
	out := make([]byte, 0, len(k))
	for i := 0; i < len(k) && len(out) < 40; i++ {
		c := k[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			out = append(out, c)
		}
	}
	return string(out)
}
