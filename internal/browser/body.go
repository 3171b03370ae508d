package browser

import (
	"bytes"
	"io"
)

// maxBody bounds what is read of one response (the rest is left unread).
const maxBody = 4 << 20

// readBody reads r to its end, or to limit bytes, into one buffer sized
// from hint (a Content-Length; -1 when unknown) rather than io.ReadAll's
// growing ones.
func readBody(r io.Reader, limit, hint int64) (string, error) {
	var buf bytes.Buffer
	if hint >= 0 {
		buf.Grow(int(min(hint, limit)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r, limit))
	return buf.String(), err
}
