// Command sim simulates a two-server SMART-on-FHIR ecosystem: an EHR FHIR
// server with its authorization server, a second FHIR server guarded by its
// own authorization server, and patient directories whose identifiers
// overlap in configurable ways. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
