package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/smart-sim/sim/scenarios"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	worldFile := fs.String("world", "", "world file (YAML); the built-in default world when empty")
	dataDir := fs.String("data", "", "keep state in this directory across restarts (default: a temporary directory removed on exit)")
	reset := fs.Bool("reset", false, "with --data: discard the stored world and data and start afresh")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 9400, "EHR origin port; Other uses port+1, the console port+2 and the broker port+3; 0 picks each at random")
	readyFile := fs.String("ready-file", "", "write the URLs as JSON to this file once everything listens")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return invalid("unexpected arguments %q (the world is given with --world)", fs.Args())
	}
	if *port < 0 || *port > 65533 {
		return invalid("--port %d: want 0 or a port from 1 to 65533", *port)
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	world, err := loadWorld(*worldFile)
	if err != nil {
		return err
	}
	if err := keepTempFilesIn(*dataDir); err != nil {
		return err
	}
	running, err := scenarios.Start(ctx, world, scenarios.Options{
		Host:    *host,
		Port:    *port,
		DataDir: *dataDir,
		Reset:   *reset,
		Logger:  logger,
	})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// Generating and loading the world leaves garbage the size of the
	// population; give it back to the system now rather than whenever the
	// background scavenger gets to it, so a long-lived serve starts small.
	debug.FreeOSMemory()
	printWelcome(stdout, running)
	if *readyFile != "" {
		if err := writeReadyFile(*readyFile, running.Ready()); err != nil {
			running.Close(context.Background())
			return err
		}
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping…")
	return running.Close(context.Background())
}

// keepTempFilesIn points SQLite's temporary files at the data directory
// dir, unless $SQLITE_TMPDIR chooses their place. A world's first load
// stages and sorts its search index rows in temporary files, about as
// much as the stores' index tables: gigabytes at 1 000 000 patients a
// side. Next to the stores there is room for them; /tmp may be memory.
// SQLite reads the variable once, when it first opens a database, so this
// must come before the world starts.
func keepTempFilesIn(dir string) error {
	if dir == "" || os.Getenv("SQLITE_TMPDIR") != "" {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	return os.Setenv("SQLITE_TMPDIR", abs)
}

// writeReadyFile writes the file atomically, so a script polling for it
// never reads half a JSON object.
func writeReadyFile(path string, ready scenarios.Ready) error {
	b, err := json.MarshalIndent(ready, "", "  ")
	if err != nil {
		return fmt.Errorf("encode ready file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write ready file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write ready file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	return nil
}

func printWelcome(w io.Writer, r *scenarios.Running) {
	ready := r.Ready()
	fmt.Fprintf(w, "sim is serving %q\n\n", r.World.Name())
	fmt.Fprintf(w, "  EHR FHIR     %s\n", ready.EHRFHIR)
	fmt.Fprintf(w, "  EHR AS       %s\n", ready.EHRIssuer)
	fmt.Fprintf(w, "  Other FHIR   %s\n", ready.OtherFHIR)
	if ready.OtherIssuer != "" {
		fmt.Fprintf(w, "  OtherAS      %s\n", ready.OtherIssuer)
	}
	if ready.BrokerIssuer != "" {
		fmt.Fprintf(w, "  Broker       %s\n", ready.BrokerIssuer)
	}
	fmt.Fprintf(w, "  console      %s\n", ready.Console)
	fmt.Fprintf(w, "  control API  %s\n\n", ready.API)
	fmt.Fprintln(w, "demo logins:")
	for _, u := range r.DemoLogins() {
		fmt.Fprintf(w, "  %-24s %-8s %s\n", u.Username, u.Password, u.FHIRUser)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "stop with Ctrl-C")
}
