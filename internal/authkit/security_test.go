package authkit

import (
	"context"
	"errors"
	"testing"

	"github.com/smart-sim/sim/internal/scope"
)

func TestAccessPatientSubjectConfined(t *testing.T) {
	a := &Access{PatientID: "p1", PatientSubject: true, Scopes: scope.MustParse("openid user/*.rs")}
	if a.Patient() != "p1" {
		t.Errorf("patient user token not confined: %q", a.Patient())
	}
	noRecord := &Access{PatientSubject: true, Scopes: scope.MustParse("user/*.rs")}
	if noRecord.Allows("Patient", "read", nil) {
		t.Error("patient user without a record is unconfined")
	}
	clin := &Access{PatientID: "p1", Scopes: scope.MustParse("user/*.rs")}
	if clin.Patient() != "" || !clin.Allows("Patient", "read", nil) {
		t.Error("clinician token changed")
	}
}

func TestRegisterLimits(t *testing.T) {
	ctx := context.Background()
	r, err := NewRegistry(ctx, NewMemStore(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ScopeCeiling = "openid patient/*.rs"
	for _, body := range []string{
		`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks_uri":"http://k.test/jwks"}`,
		`{"redirect_uris":["http://a.test/cb"],"token_endpoint_auth_method":"none","scope":"system/*.rs"}`,
		`{"redirect_uris":["http://a.test/cb"],"token_endpoint_auth_method":"none","scope":"user/*.cruds"}`,
	} {
		var e *Error
		if _, err := r.Register(ctx, []byte(body)); !errors.As(err, &e) || e.Code != "invalid_client_metadata" {
			t.Errorf("%s: %v", body, err)
		}
	}
	resp, err := r.Register(ctx, []byte(`{"redirect_uris":["http://a.test/cb"],"token_endpoint_auth_method":"none","scope":"openid patient/Observation.r user/*.rs"}`))
	if err != nil || resp.Scope != "openid patient/Observation.r" {
		t.Fatalf("narrowed: %v %+v", err, resp)
	}
	r.OpenBackend = true
	resp, err = r.Register(ctx, []byte(`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks_uri":"http://k.test/jwks","scope":"system/Patient.rs"}`))
	if err != nil || resp.Scope != "system/Patient.rs" {
		t.Fatalf("open backend: %v %+v", err, resp)
	}
}
