package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/smart-sim/sim/scenarios"
)

// runLoad is `sim load [--direction a] [--flows N | --duration D]
// [--concurrency C] [--target READY.json] [--world FILE] [--format json]`:
// it drives complete flows through real HTTP and the real forms, prints
// flows/s, latency percentiles, errors by kind and time per endpoint, and
// exits 1 when any flow failed.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load", stderr)
	var names []string
	for _, d := range scenarios.Directions() {
		n := d.Name
		if !d.Wired {
			n += " (not wired yet)"
		}
		names = append(names, n)
	}
	direction := fs.String("direction", scenarios.DirectionA, "the flow to drive: "+strings.Join(names, ", ")+
		" (c: the own world is run with other.governed_by: ehr; a --target must be such a world, and then only c and ehr run)")
	flows := fs.Int("flows", 0, "stop after `N` flows (default 100 when --duration is not given)")
	duration := fs.Duration("duration", 0, "stop after this long (e.g. 30s, 5m)")
	concurrency := fs.Int("concurrency", 1, "flows under way at once")
	rate := fs.Float64("rate", 0, "start `R` flows a second, on a schedule (an open loop: a flow's latency counts from when it was due, waits for a free worker included); default: the next flow as soon as a worker is free")
	target := fs.String("target", "", "drive the `sim serve` described by this ready-file (default: an own world in this process)")
	worldFile := fs.String("world", "", "the world `file` (own world; against --target, where the apps' secrets come from); default: the built-in world")
	format := fs.String("format", "text", "report format on stdout: text or json")
	progress := fs.String("progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), always, never")
	logLevel := fs.String("log-level", "none", "server log level of an own world (none, debug, info, warn, error)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sim load [--direction a] [--flows N | --duration D] [--concurrency C] [--rate R] [--target READY.json] [--format json]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return invalid("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *format != "text" && *format != "json" {
		return invalid("--format: found %q, expected text or json", *format)
	}
	if *flows < 0 || *duration < 0 || *concurrency < 1 {
		return invalid("--flows and --duration cannot be negative, --concurrency must be at least 1")
	}
	if !(*rate >= 0) || math.IsInf(*rate, 0) {
		return invalid("--rate: found %v, expected flows a second, 0 or more", *rate)
	}
	if *flows > 0 && *duration > 0 {
		return invalid("give --flows or --duration, not both")
	}
	d, ok := scenarios.LookupDirection(*direction)
	if !ok || !d.Wired {
		return invalid("--direction: found %q, expected one of %s", *direction, strings.Join(wiredDirections(), ", "))
	}
	opt := scenarios.LoadOptions{Direction: d.Name, Flows: *flows, Duration: *duration, Concurrency: *concurrency, Rate: *rate}
	if *worldFile != "" {
		w, err := scenarios.LoadWorld(*worldFile)
		if err != nil {
			fmt.Fprintln(stderr, err.Error())
			return &exitError{code: exitInvalid, err: errors.New("the world file has problems")}
		}
		opt.World = w
	}
	if *target != "" {
		ready, err := readReady(*target)
		if err != nil {
			return err
		}
		opt.Target = &ready
	}
	if *logLevel != "none" {
		logger, err := newLogger(stderr, *logLevel)
		if err != nil {
			return err
		}
		opt.Logger = logger
	}
	var bar *progressBar
	switch *progress {
	case "always":
		bar = &progressBar{w: stderr}
	case "auto":
		if isTerminal(stderr) {
			bar = &progressBar{w: stderr}
		}
	case "never":
	default:
		return invalid("--progress: found %q, expected auto, always or never", *progress)
	}
	if bar != nil {
		opt.Progress = bar.update
	}
	rep, err := scenarios.Load(ctx, opt)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		if errors.Is(err, scenarios.ErrLoadInput) {
			return &exitError{code: exitInvalid, err: err}
		}
		if rep.Flows == 0 {
			return err
		}
		// Interrupted: the report of what ran is still worth printing.
		fmt.Fprintln(stderr, "sim load: "+err.Error())
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
	} else {
		writeLoadText(stdout, rep)
	}
	if rep.Failed > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("%d of %d flows failed", rep.Failed, rep.Flows)}
	}
	if err != nil {
		return &exitError{code: exitFailed, err: errors.New("the run was interrupted")}
	}
	return nil
}

func wiredDirections() []string {
	var out []string
	for _, d := range scenarios.Directions() {
		if d.Wired {
			out = append(out, d.Name)
		}
	}
	return out
}

func writeLoadText(w io.Writer, r scenarios.LoadReport) {
	fmt.Fprintf(w, "direction %s against %s, concurrency %d", r.Direction, r.Target, r.Concurrency)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", %g flows/s offered (latency from when each flow was due)", r.Rate)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "flows     %d in %.2fs: %.1f flows/s, %d failed\n", r.Flows, r.ElapsedS, r.FlowsPerS, r.Failed)
	l := r.LatencyMS
	fmt.Fprintf(w, "latency   p50 %.2fms  p95 %.2fms  p99 %.2fms  max %.2fms  (mean %.2fms)\n", l.P50, l.P95, l.P99, l.Max, l.Mean)
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "memory    RSS %.0f MB at the start, %.0f MB halfway, %.0f MB at the end, peak %.0f MB (world and load client)\n", m.StartMB, m.HalfMB, m.EndMB, m.PeakMB)
	}
	if r.DueNotStarted > 0 {
		fmt.Fprintf(w, "behind    %d flows were due before the end but never began (every worker was busy): the latency above leaves them out\n", r.DueNotStarted)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "errors:")
		for _, k := range r.SortedErrors() {
			fmt.Fprintf(w, "  %6d  %s\n", r.Errors[k], k)
		}
	}
	if len(r.Endpoints) > 0 {
		fmt.Fprintln(w, "time per endpoint (as the app and the user see it):")
		width := len("endpoint")
		for _, e := range r.Endpoints {
			width = max(width, len(e.Endpoint))
		}
		fmt.Fprintf(w, "  %-*s %8s %9s %9s %9s %9s\n", width, "endpoint", "count", "total", "p50", "p99", "max")
		for _, e := range r.Endpoints {
			fmt.Fprintf(w, "  %-*s %8d %8.2fs %7.2fms %7.2fms %7.2fms\n", width, e.Endpoint, e.Count, e.TotalS, e.LatencyMS.P50, e.LatencyMS.P99, e.LatencyMS.Max)
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws one line, redrawn in place with \r.
type progressBar struct {
	w    io.Writer
	mu   sync.Mutex
	drew bool
}

func (b *progressBar) update(p scenarios.LoadProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	frac := 0.0
	goal := ""
	switch {
	case p.Flows > 0:
		frac = float64(p.Done) / float64(p.Flows)
		goal = fmt.Sprintf("%d/%d flows", p.Done, p.Flows)
	case p.Duration > 0:
		frac = float64(p.Elapsed) / float64(p.Duration)
		goal = fmt.Sprintf("%s/%s, %d flows", p.Elapsed.Truncate(time.Second), p.Duration, p.Done)
	}
	frac = min(max(frac, 0), 1)
	const width = 30
	n := int(frac * width)
	rate := 0.0
	if p.Elapsed > 0 {
		rate = float64(p.Done) / p.Elapsed.Seconds()
	}
	fmt.Fprintf(b.w, "\r[%s%s] %s  %.0f flows/s  %d failed   ", strings.Repeat("#", n), strings.Repeat(" ", width-n), goal, rate, p.Failed)
	b.drew = true
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drew {
		fmt.Fprintln(b.w)
	}
}
