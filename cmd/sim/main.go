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

	"github.com/smart-sim/sim/internal/gcfloor"
)

func main() {
	// Unless GOMEMLIMIT is set, a soft memory limit keeps a large world's
	// generation and first load under gcfloor.MemoryLimit.
	gcfloor.LimitMemoryUnlessSet()
	// Unless GOGC is set, the heap may grow to gcfloor.Default before a
	// collection: at the default pace the collector cost a tenth of the
	// throughput under load (BENCHMARKS.md, fourth round).
	gcfloor.StartUnlessSet()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
