// Package browser is a scripted user: an HTTP client with a cookie jar
// that follows redirects until it reaches an app's redirect URI, reads the
// HTML forms on a page (from the tree golang.org/x/net/html builds) and
// submits them with chosen values, checkbox states and
// button. Tests and the scenario runner drive the real login, patient
// picker and consent pages with it.
package browser
