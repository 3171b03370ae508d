// Package httpkit holds what every sim HTTP server shares: Serve with all
// timeouts and graceful shutdown, and the middleware wrapped once around each
// origin (request ID, slog access log, panic recovery, CORS); and, for
// clients, ReadBody.
package httpkit
