package scenarios_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/smart-sim/sim/scenarios"
)

// shared is one default world that the tests share: they run one at a
// time, and those that inject faults or skew the clock undo it when done.
var shared *scenarios.Running

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	r, err := scenarios.Start(context.Background(), scenarios.DefaultWorld(), scenarios.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the shared world:", err)
		return 1
	}
	shared = r
	defer r.Close(context.Background())
	return m.Run()
}

// sharedWorld returns the shared default world, healthy and on time.
func sharedWorld(t *testing.T) *scenarios.Running {
	t.Helper()
	shared.Faults.Clear()
	shared.Clock.Reset()
	return shared
}
