package fhirstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
)

func patientBody(id, family string) []byte {
	return []byte(`{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}]}`)
}

func familyOf(t *testing.T, body json.RawMessage) string {
	t.Helper()
	f, err := family(body)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func family(body json.RawMessage) (string, error) {
	var p struct {
		Name []struct{ Family string } `json:"name"`
	}
	if err := json.Unmarshal(body, &p); err != nil || len(p.Name) == 0 {
		return "", fmt.Errorf("decode %s: %v", body, err)
	}
	return p.Name[0].Family, nil
}

// Every kind of write is seen by the next read, though the read before it
// filled the cache.
func TestReadCacheSeesEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "http://127.0.0.1/fhir")
	if _, err := s.Update(ctx, "Patient", "p1", patientBody("p1", "One"), 0); err != nil {
		t.Fatal(err)
	}
	read := func() (*Version, error) { return s.ReadVersion(ctx, "Patient", "p1", 0) }
	for range 2 { // the second read is served from the cache
		v, err := read()
		if err != nil || v.Version != 1 || familyOf(t, v.Body) != "One" {
			t.Fatalf("read: %+v %v", v, err)
		}
	}
	if _, err := s.Update(ctx, "Patient", "p1", patientBody("p1", "Two"), 1); err != nil {
		t.Fatal(err)
	}
	if v, err := read(); err != nil || v.Version != 2 || familyOf(t, v.Body) != "Two" {
		t.Fatalf("after update: %+v %v", v, err)
	}
	if err := s.Load(ctx, []json.RawMessage{patientBody("p1", "Three")}, false); err != nil {
		t.Fatal(err)
	}
	if v, err := read(); err != nil || v.Version != 3 || familyOf(t, v.Body) != "Three" {
		t.Fatalf("after load: %+v %v", v, err)
	}
	if err := s.Delete(ctx, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, ErrGone) {
		t.Fatalf("after delete: %v, want ErrGone", err)
	}
	// vread is never cached: version 2 is still version 2.
	if v, err := s.ReadVersion(ctx, "Patient", "p1", 2); err != nil || familyOf(t, v.Body) != "Two" {
		t.Fatalf("vread 2: %+v %v", v, err)
	}
	// A caller changing the returned Version does not change the cache.
	if _, err := s.Update(ctx, "Patient", "p1", patientBody("p1", "Four"), 0); err != nil {
		t.Fatal(err)
	}
	v, _ := read()
	v.Version = 99
	if v2, _ := read(); v2.Version == 99 {
		t.Fatal("the cached version was changed through a returned copy")
	}
}

func mustFamily(body json.RawMessage) string {
	f, err := family(body)
	if err != nil {
		return err.Error()
	}
	return f
}

// Readers racing a writer: once an update has returned, no read that
// starts afterwards may see an older version (the race detector also
// checks the cache's locking).
func TestReadCacheNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "http://127.0.0.1/fhir")
	if _, err := s.Update(ctx, "Patient", "p1", patientBody("p1", "v0"), 0); err != nil {
		t.Fatal(err)
	}
	const writes = 60
	var acked sync.Map // version -> true once its Update returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// The newest version acknowledged before this read began.
				floor := 0
				for n := writes + 1; n > 0; n-- {
					if _, ok := acked.Load(n); ok {
						floor = n
						break
					}
				}
				v, err := s.ReadVersion(ctx, "Patient", "p1", 0)
				if err != nil {
					errs <- err
					return
				}
				if v.Version < floor {
					errs <- fmt.Errorf("read version %d after version %d was acknowledged", v.Version, floor)
					return
				}
				if got, want := mustFamily(v.Body), "v"+strconv.Itoa(v.Version-1); got != want {
					errs <- fmt.Errorf("version %d carries the body of %s", v.Version, got)
					return
				}
			}
		}()
	}
	for i := 1; i <= writes; i++ {
		v, err := s.Update(ctx, "Patient", "p1", patientBody("p1", "v"+strconv.Itoa(i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		acked.Store(v.Version, true)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// The cache keeps within its byte budget and never keeps a large body.
func TestReadCacheBounds(t *testing.T) {
	c := newReadCache()
	big := &Version{Body: make([]byte, readCacheMaxBody+1)}
	_, gen := c.get("Patient/big")
	c.fill("Patient/big", big, gen)
	if v, _ := c.get("Patient/big"); v != nil {
		t.Fatal("a body over readCacheMaxBody was cached")
	}
	body := make([]byte, readCacheMaxBody)
	for i := range readCacheBytes/readCacheMaxBody + 8 {
		key := "Patient/p" + strconv.Itoa(i)
		_, gen := c.get(key)
		c.fill(key, &Version{Body: body}, gen)
		c.fill(key, &Version{Body: body}, gen) // a refill does not count twice
		if c.bytes > readCacheBytes {
			t.Fatalf("after %d fills: %d bytes cached, budget %d", i+1, c.bytes, readCacheBytes)
		}
		sum := 0
		for _, v := range c.m {
			sum += len(v.Body)
		}
		if sum != c.bytes {
			t.Fatalf("byte count %d, bodies hold %d", c.bytes, sum)
		}
	}
	c.invalidate("Patient/p" + strconv.Itoa(readCacheBytes/readCacheMaxBody+7))
	sum := 0
	for _, v := range c.m {
		sum += len(v.Body)
	}
	if sum != c.bytes {
		t.Fatalf("after invalidate: byte count %d, bodies hold %d", c.bytes, sum)
	}
}
