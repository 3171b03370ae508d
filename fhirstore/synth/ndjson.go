package synth

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// WriteNDJSON writes the population as bulk-data style NDJSON files:
// dir/ehr/<Type>.ndjson and dir/other/<Type>.ndjson, one resource per line in
// generation order. The bytes depend only on the population. It returns the
// resource count per file, keyed "ehr/Patient.ndjson" and so on.
func WriteNDJSON(p *Population, dir string) (map[string]int, error) {
	w, err := NewNDJSONWriter(dir)
	if err != nil {
		return nil, err
	}
	err = errors.Join(w.Write(SideEHR, p.EHR), w.Write(SideOther, p.Other))
	counts, cerr := w.Close()
	if err = errors.Join(err, cerr); err != nil {
		return nil, err
	}
	return counts, nil
}

// NDJSONWriter writes streamed resources into the files WriteNDJSON
// writes, with the same bytes: Stream(cfg, w.Write) then Close gives what
// WriteNDJSON(Generate(cfg)) gives, holding only a write buffer per file.
// Write is safe for concurrent use.
type NDJSONWriter struct {
	dir    string
	mu     sync.Mutex
	files  map[string]*ndjsonFile // by "side/Type.ndjson"
	counts map[string]int
}

type ndjsonFile struct {
	f *os.File
	w *bufio.Writer
}

// NewNDJSONWriter creates dir/ehr and dir/other.
func NewNDJSONWriter(dir string) (*NDJSONWriter, error) {
	for _, side := range []string{SideEHR, SideOther} {
		if err := os.MkdirAll(filepath.Join(dir, side), 0o755); err != nil {
			return nil, fmt.Errorf("write ndjson: %w", err)
		}
	}
	return &NDJSONWriter{dir: dir, files: map[string]*ndjsonFile{}, counts: map[string]int{}}, nil
}

// Write appends a batch of one side's resources to their type's file (an
// Emit). side is SideEHR or SideOther.
func (w *NDJSONWriter) Write(side string, batch []Resource) error {
	if side != SideEHR && side != SideOther {
		return fmt.Errorf("write ndjson: unknown side %q", side)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range batch {
		name := side + "/" + r.Type + ".ndjson"
		f := w.files[name]
		if f == nil {
			if _, ok := idPrefix[r.Type]; !ok {
				return fmt.Errorf("write ndjson: unknown resource type %q", r.Type)
			}
			fh, err := os.Create(filepath.Join(w.dir, side, r.Type+".ndjson"))
			if err != nil {
				return fmt.Errorf("write ndjson: %w", err)
			}
			f = &ndjsonFile{f: fh, w: bufio.NewWriterSize(fh, 1<<16)}
			w.files[name] = f
		}
		f.w.Write(r.JSON)
		if err := f.w.WriteByte('\n'); err != nil {
			return fmt.Errorf("write ndjson: %w", err)
		}
		w.counts[name]++
	}
	return nil
}

// Close flushes and closes every file and returns the resource count per
// file, keyed "ehr/Patient.ndjson" and so on.
func (w *NDJSONWriter) Close() (map[string]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, f := range w.files {
		errs = append(errs, f.w.Flush(), f.f.Close())
	}
	w.files = map[string]*ndjsonFile{}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("write ndjson: %w", err)
	}
	return w.counts, nil
}
