package synth

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// WriteNDJSON writes the population as bulk-data style NDJSON files:
// dir/ehr/<Type>.ndjson and dir/other/<Type>.ndjson, one resource per line in
// generation order. The bytes depend only on the population. It returns the
// resource count per file, keyed "ehr/Patient.ndjson" and so on.
func WriteNDJSON(p *Population, dir string) (map[string]int, error) {
	counts := map[string]int{}
	for _, side := range []struct {
		name string
		res  []Resource
	}{{"ehr", p.EHR}, {"other", p.Other}} {
		sideDir := filepath.Join(dir, side.name)
		if err := os.MkdirAll(sideDir, 0o755); err != nil {
			return nil, fmt.Errorf("write ndjson: %w", err)
		}
		byType := map[string][]Resource{}
		for _, r := range side.res {
			byType[r.Type] = append(byType[r.Type], r)
		}
		types := make([]string, 0, len(byType))
		for t := range byType {
			types = append(types, t)
		}
		slices.Sort(types)
		for _, t := range types {
			name := t + ".ndjson"
			if err := writeLines(filepath.Join(sideDir, name), byType[t]); err != nil {
				return nil, fmt.Errorf("write ndjson: %w", err)
			}
			counts[side.name+"/"+name] = len(byType[t])
		}
	}
	return counts, nil
}

func writeLines(path string, res []Resource) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(f, 1<<16)
	for _, r := range res {
		w.Write(r.JSON)
		w.WriteByte('\n')
	}
	return w.Flush()
}
