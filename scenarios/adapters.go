package scenarios

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/fhirstore"
	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/otheras"
)

// users is the world's logins, adapted to what the authorization servers
// ask of a user directory.
type users struct {
	byName map[string]synth.User
}

var _ ehr.UserDirectory = (*users)(nil)

func newUsers(list []synth.User) *users {
	u := &users{byName: make(map[string]synth.User, len(list))}
	u.add(list)
	return u
}

// add registers logins; only before the servers using u serve.
func (u *users) add(list []synth.User) {
	for _, x := range list {
		u.byName[x.Username] = x
	}
}

func (u *users) Authenticate(ctx context.Context, username, password string) (ehr.User, error) {
	x, ok := u.byName[username]
	// Compare in constant time even for unknown users, so timing does not
	// tell which usernames exist.
	want := x.Password
	if !ok {
		want = "\x00unknown-user"
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte(want)) != 1 || !ok {
		return ehr.User{}, ehr.ErrNotFound
	}
	return u.Lookup(ctx, username)
}

func (u *users) Lookup(_ context.Context, username string) (ehr.User, error) {
	x, ok := u.byName[username]
	if !ok {
		return ehr.User{}, ehr.ErrNotFound
	}
	out := ehr.User{Username: x.Username, DisplayName: x.Username, FHIRUser: x.FHIRUser, Kind: ehr.Clinician}
	if x.Kind == synth.UserPatient {
		out.Kind = ehr.PatientUser
		out.PatientID = strings.TrimPrefix(x.FHIRUser, "Patient/")
	}
	return out, nil
}

// patients adapts a FHIR store to the picker's patient directory.
type patients struct {
	store     *fhirstore.Store
	mrnSystem string
}

var _ ehr.PatientDirectory = (*patients)(nil)

// patientJSON is the part of a Patient the pickers show.
type patientJSON struct {
	ID         string `json:"id"`
	Gender     string `json:"gender"`
	BirthDate  string `json:"birthDate"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Name []struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
}

func (p patientJSON) displayName() string {
	for _, n := range p.Name {
		if n.Use == "official" || n.Use == "" {
			return strings.TrimSpace(strings.Join(n.Given, " ") + " " + n.Family)
		}
	}
	if len(p.Name) > 0 {
		return strings.TrimSpace(strings.Join(p.Name[0].Given, " ") + " " + p.Name[0].Family)
	}
	return p.ID
}

func (d *patients) summary(raw json.RawMessage) (ehr.PatientSummary, error) {
	var p patientJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return ehr.PatientSummary{}, fmt.Errorf("decode patient: %w", err)
	}
	s := ehr.PatientSummary{ID: p.ID, Name: p.displayName(), BirthDate: p.BirthDate, Gender: p.Gender}
	for _, id := range p.Identifier {
		if id.System == d.mrnSystem {
			s.MRN = id.Value
		}
	}
	return s, nil
}

func (d *patients) Patient(ctx context.Context, id string) (ehr.PatientSummary, error) {
	raw, err := d.store.Read(ctx, "Patient", id)
	if errors.Is(err, fhirstore.ErrNotFound) || errors.Is(err, fhirstore.ErrGone) {
		return ehr.PatientSummary{}, ehr.ErrNotFound
	}
	if err != nil {
		return ehr.PatientSummary{}, fmt.Errorf("read patient %s: %w", id, err)
	}
	return d.summary(raw)
}

func (d *patients) SearchPatients(ctx context.Context, text string, limit int) ([]ehr.PatientSummary, error) {
	q := url.Values{"_count": {strconv.Itoa(max(1, min(limit, 100)))}}
	if text = strings.TrimSpace(text); text != "" {
		q.Set("name", text)
	}
	res, err := d.store.Search(ctx, "Patient", q)
	if err != nil {
		return nil, fmt.Errorf("search patients: %w", err)
	}
	out := make([]ehr.PatientSummary, 0, len(res.Entries))
	for _, e := range res.Entries {
		s, err := d.summary(e.Resource)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *patients) Encounters(ctx context.Context, patientID string) ([]ehr.Encounter, error) {
	res, err := d.store.Search(ctx, "Encounter", url.Values{"patient": {patientID}, "_sort": {"-date"}, "_count": {"20"}})
	if err != nil {
		return nil, fmt.Errorf("search encounters of %s: %w", patientID, err)
	}
	out := make([]ehr.Encounter, 0, len(res.Entries))
	for _, e := range res.Entries {
		var enc struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Class  struct {
				Display string `json:"display"`
				Code    string `json:"code"`
			} `json:"class"`
			Type []struct {
				Text string `json:"text"`
			} `json:"type"`
			Period struct {
				Start string `json:"start"`
			} `json:"period"`
		}
		if err := json.Unmarshal(e.Resource, &enc); err != nil {
			return nil, fmt.Errorf("decode encounter: %w", err)
		}
		label := enc.Class.Display
		if label == "" {
			label = enc.Class.Code
		}
		if len(enc.Type) > 0 && enc.Type[0].Text != "" {
			label = enc.Type[0].Text
		}
		if d := enc.Period.Start; len(d) >= 10 {
			label += " · " + d[:10]
		}
		out = append(out, ehr.Encounter{ID: enc.ID, Label: strings.TrimSpace(label)})
	}
	return out, nil
}

// accessVerifier adapts an authorization server's access-token check to the
// FHIR server's TokenVerifier seam.
type accessVerifier func(ctx context.Context, bearer string) (*authkit.Access, error)

var _ fhirstore.TokenVerifier = accessVerifier(nil)

func (v accessVerifier) Verify(ctx context.Context, bearer string) (fhirstore.Grant, error) {
	a, err := v(ctx, bearer)
	if err != nil {
		return nil, err
	}
	return grant{a}, nil
}

type grant struct{ *authkit.Access }

func (g grant) Allows(resourceType string, in fhirstore.Interaction, params url.Values) bool {
	return g.Access.Allows(resourceType, string(in), params)
}

// otherUsers gives the world's logins to OtherAS. The users are the EHR's
// people; at Other they have no FHIR resource of their own. Patient-portal
// users are recognised from a launch-token (and then confined to the
// matched record) but cannot sign in at Other directly: nothing there says
// which of Other's records is theirs.
type otherUsers struct{ *users }

var _ otheras.UserDirectory = otherUsers{}

func (u otherUsers) Authenticate(ctx context.Context, username, password string) (otheras.User, error) {
	x, err := u.users.Authenticate(ctx, username, password)
	if err != nil || x.Kind != ehr.Clinician {
		return otheras.User{}, otheras.ErrNotFound
	}
	return otheras.User{Username: x.Username, DisplayName: x.DisplayName}, nil
}

func (u otherUsers) Lookup(ctx context.Context, username string) (otheras.User, error) {
	x, err := u.users.Lookup(ctx, username)
	if err != nil {
		return otheras.User{}, otheras.ErrNotFound
	}
	return otheras.User{Username: x.Username, DisplayName: x.DisplayName, Patient: x.Kind == ehr.PatientUser}, nil
}

// otherDirectory adapts the Other FHIR store to OtherAS's patient matching
// and picker.
type otherDirectory struct{ store *fhirstore.Store }

var _ otheras.Directory = otherDirectory{}

func (d otherDirectory) record(raw json.RawMessage) (otheras.PatientRecord, error) {
	var p patientJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return otheras.PatientRecord{}, fmt.Errorf("decode patient: %w", err)
	}
	rec := otheras.PatientRecord{ID: p.ID, Name: p.displayName(), BirthDate: p.BirthDate, Gender: p.Gender}
	for _, n := range p.Name {
		if n.Use == "official" || n.Use == "" || rec.Family == "" {
			rec.Family, rec.Given = n.Family, n.Given
		}
	}
	for _, id := range p.Identifier {
		rec.Identifiers = append(rec.Identifiers, otheras.Identifier{System: id.System, Value: id.Value})
	}
	return rec, nil
}

func (d otherDirectory) records(res *fhirstore.SearchResult) ([]otheras.PatientRecord, error) {
	out := make([]otheras.PatientRecord, 0, len(res.Entries))
	for _, e := range res.Entries {
		rec, err := d.record(e.Resource)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func (d otherDirectory) FindByIdentifier(ctx context.Context, system, value string) ([]otheras.PatientRecord, error) {
	entries, err := d.store.FindByIdentifier(ctx, "Patient", system, value, 10)
	if err != nil {
		return nil, fmt.Errorf("search patients by identifier: %w", err)
	}
	return d.records(&fhirstore.SearchResult{Entries: entries})
}

func (d otherDirectory) Patient(ctx context.Context, id string) (otheras.PatientRecord, error) {
	raw, err := d.store.Read(ctx, "Patient", id)
	if errors.Is(err, fhirstore.ErrNotFound) || errors.Is(err, fhirstore.ErrGone) {
		return otheras.PatientRecord{}, otheras.ErrNotFound
	}
	if err != nil {
		return otheras.PatientRecord{}, fmt.Errorf("read patient %s: %w", id, err)
	}
	return d.record(raw)
}

func (d otherDirectory) SearchPatients(ctx context.Context, text string, limit int) ([]otheras.PatientRecord, error) {
	q := url.Values{"_count": {strconv.Itoa(max(1, min(limit, 100)))}}
	if text = strings.TrimSpace(text); text != "" {
		q.Set("name", text)
	}
	res, err := d.store.Search(ctx, "Patient", q)
	if err != nil {
		return nil, fmt.Errorf("search patients: %w", err)
	}
	return d.records(res)
}
