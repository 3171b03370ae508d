package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/seqdiag"
	"github.com/smart-sim/sim/scenarios"
)

// runCompare runs directions A–D for the same app, user and patient and
// prints what each costs and shows (flows.md "What a scenario compares").
func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compare", stderr)
	worldFile := fs.String("world", "", "world file (YAML); the built-in default world when empty")
	class := fs.String("class", "shared", "overlap class of the patient: shared, other_id_only, ambiguous or absent")
	format := fs.String("format", "text", "output: text, markdown or json")
	traceDir := fs.String("trace", "", "directory to write the four sequence diagrams (SVG) into")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return invalid("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch *format {
	case "text", "markdown", "json":
	default:
		return invalid("--format: found %q, expected text, markdown or json", *format)
	}
	switch *class {
	case "shared", "other_id_only", "ambiguous", "absent":
	default:
		return invalid("--class: found %q, expected shared, other_id_only, ambiguous or absent", *class)
	}
	world, err := loadWorld(*worldFile)
	if err != nil {
		return err
	}
	res, err := scenarios.Compare(ctx, scenarios.CompareOptions{World: world, Class: *class})
	if err != nil {
		return err
	}
	if *traceDir != "" {
		if err := os.MkdirAll(*traceDir, 0o755); err != nil {
			return fmt.Errorf("create trace directory: %w", err)
		}
		for _, r := range res {
			svg := seqdiag.SVG(r.Flow, seqdiag.Options{Title: "Direction " + r.Direction + ": " + r.Name, IDPrefix: "d" + r.Direction})
			if err := os.WriteFile(filepath.Join(*traceDir, "direction-"+strings.ToLower(r.Direction)+".svg"), svg, 0o644); err != nil {
				return fmt.Errorf("write diagram: %w", err)
			}
		}
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case "markdown":
		writeCompareTable(stdout, res, true)
	default:
		writeCompareTable(stdout, res, false)
	}
	return nil
}

// compareRows are the table's rows: a label and each direction's cell.
func compareRows(res []scenarios.DirectionResult) [][]string {
	rows := [][]string{{""}}
	for _, r := range res {
		rows[0] = append(rows[0], r.Direction+": "+r.Name)
	}
	add := func(label string, cell func(r scenarios.DirectionResult) string) {
		row := []string{label}
		for _, r := range res {
			row = append(row, cell(r))
		}
		rows = append(rows, row)
	}
	itoa := strconv.Itoa
	add("browser redirects", func(r scenarios.DirectionResult) string { return itoa(r.Redirects) })
	add("user interactions", func(r scenarios.DirectionResult) string { return itoa(r.Interactions) })
	add("server-to-server calls", func(r scenarios.DirectionResult) string { return itoa(r.ServerToServe) })
	add("HTTP exchanges", func(r scenarios.DirectionResult) string { return itoa(r.Exchanges) })
	add("wall time", func(r scenarios.DirectionResult) string { return r.WallTime.Round(time.Millisecond).String() })
	for _, server := range []string{"EHR FHIR", "Other FHIR"} {
		add("granted at "+server, func(r scenarios.DirectionResult) string {
			for _, s := range r.Scopes {
				if s.Server == server {
					return strings.Join(s.Granted, " ") + " (" + s.DecidedBy + ")"
				}
			}
			return "-"
		})
		add("refused at "+server, func(r scenarios.DirectionResult) string {
			for _, s := range r.Scopes {
				if s.Server == server {
					if len(s.Refused) == 0 {
						return "none"
					}
					return strings.Join(s.Refused, " ")
				}
			}
			return "-"
		})
	}
	add("user saw what the app gets at Other", func(r scenarios.DirectionResult) string { return r.UserSawOther })
	for _, server := range []string{"EHR FHIR", "Other FHIR"} {
		add("could read "+server, func(r scenarios.DirectionResult) string { return strings.Join(r.Readers[server], ", ") })
	}
	add("error", func(r scenarios.DirectionResult) string {
		if r.Error == "" {
			return "none"
		}
		return r.Error
	})
	return rows
}

func writeCompareTable(w io.Writer, res []scenarios.DirectionResult, markdown bool) {
	rows := compareRows(res)
	if len(res) > 0 {
		fmt.Fprintf(w, "patient %s (class %s)\n\n", res[0].Patient, res[0].Class)
	}
	if markdown {
		for i, row := range rows {
			cells := make([]string, len(row))
			for j, c := range row {
				cells[j] = strings.ReplaceAll(c, "|", `\|`)
			}
			fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
			if i == 0 {
				fmt.Fprintln(w, "|"+strings.Repeat(" --- |", len(row)))
			}
		}
		return
	}
	// Text: one block per direction keeps long cells readable.
	width := 0
	for _, row := range rows[1:] {
		width = max(width, len(row[0]))
	}
	for j := 1; j < len(rows[0]); j++ {
		fmt.Fprintln(w, rows[0][j])
		for _, row := range rows[1:] {
			fmt.Fprintf(w, "  %-*s  %s\n", width, row[0], row[j])
		}
		fmt.Fprintln(w)
	}
}
