package httpkit

import (
	"bytes"
	"io"
	"net/http"
)

// ReadBody reads resp's body to its end, or to limit bytes, into one
// buffer sized from its Content-Length (when known) rather than
// io.ReadAll's series of growing ones. It does not close the body.
func ReadBody(resp *http.Response, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n >= 0 {
		buf.Grow(int(min(n, limit)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit))
	return buf.Bytes(), err
}
