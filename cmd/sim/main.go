// Command sim simulates a two-server SMART-on-FHIR ecosystem: an EHR FHIR
// server with its authorization server, a second FHIR server guarded by its
// own authorization server, and patient directories whose identifiers
// overlap in configurable ways. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/smart-sim/sim/internal/gcfloor"
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT says otherwise: generating and loading a large world makes
// garbage faster than the collector's default pace returns it (1 M
// patients per side peaked at 1.9 GB without a limit, 1.1 GB with one). A
// soft limit never fails an allocation; it only makes the collector work
// harder near it.
const defaultMemoryLimit = 1 << 30

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	// Unless GOGC is set, the heap may grow to gcfloor.Default before a
	// collection: at the default pace the collector cost a tenth of the
	// throughput under load (BENCHMARKS.md, fourth round).
	gcfloor.StartUnlessSet()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
