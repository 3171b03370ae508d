package scope

import (
	"errors"
	"net/url"
	"testing"
)

func TestAllows(t *testing.T) {
	lab := url.Values{"category": {"laboratory"}}
	for _, tc := range []struct {
		scopes, rt, interaction string
		params                  url.Values
		levels                  []Level
		want                    bool
	}{
		{"patient/Observation.read", "Observation", "search", nil, []Level{Patient}, true},
		{"patient/Observation.read", "Observation", "create", nil, []Level{Patient}, false},
		{"patient/Observation.write", "Observation", "update", nil, []Level{Patient}, true},
		{"patient/*.*", "Condition", "delete", nil, []Level{Patient}, true},
		{"patient/Observation.rs", "Observation", "vread", nil, []Level{Patient}, true},
		{"patient/Observation.r", "Observation", "search", nil, []Level{Patient}, false},
		{"patient/Observation.cruds", "Observation", "history", nil, []Level{Patient}, true},
		{"user/*.rs", "Patient", "read", nil, []Level{User, System}, true},
		{"patient/*.rs", "Patient", "read", nil, []Level{User, System}, false},
		{"system/Patient.rs", "Patient", "search", nil, []Level{User, System}, true},
		{"patient/Observation.rs?category=laboratory", "Observation", "search", lab, []Level{Patient}, true},
		{"patient/Observation.rs?category=laboratory", "Observation", "search", url.Values{"category": {"http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}, []Level{Patient}, true},
		{"patient/Observation.rs?category=laboratory", "Observation", "search", url.Values{"category": {"laboratory,vital-signs"}}, []Level{Patient}, false},
		{"patient/Observation.rs?category=laboratory", "Observation", "search", nil, []Level{Patient}, false},
		{"patient/Observation.rs?category=laboratory", "Observation", "read", lab, []Level{Patient}, false},
		{"patient/Observation.rs", "Observation", "bogus", nil, []Level{Patient}, false},
	} {
		set, err := Parse(tc.scopes)
		if err != nil {
			t.Fatal(err)
		}
		if got := set.Allows(tc.levels, tc.rt, tc.interaction, tc.params); got != tc.want {
			t.Errorf("%s %s %s %v: got %v", tc.scopes, tc.interaction, tc.rt, tc.params, got)
		}
	}
}

func TestParseSyntax(t *testing.T) {
	good := []string{"openid fhirUser launch launch/patient unknown_thing foo/bar", "patient/*.rs user/Observation.cruds system/Patient.read", "patient/Observation.rs?category=a&code=b"}
	for _, s := range good {
		if _, err := Parse(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{"patient/Observation.xyz", "patient/Observation.sr", "patient/.rs", "patient/observation.rs", "patient/Observation", "patient/Observation.read?x=1", "a\"b", "caf\u00e9", "patient/Observation.rs?"}
	for _, s := range bad {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: want ErrSyntax, got %v", s, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("patient/Observation.rs?category=laboratory openid")
	f.Fuzz(func(t *testing.T, s string) {
		set, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error not ErrSyntax: %v", err)
			}
			return
		}
		again, err := Parse(set.String())
		if err != nil || again.String() != set.String() {
			t.Fatalf("round trip %q -> %q: %v", set.String(), again.String(), err)
		}
		set.Allows([]Level{Patient, User, System}, "Observation", "search", url.Values{"category": {"x"}})
	})
}

func TestCovers(t *testing.T) {
	ceiling := MustParse("openid patient/*.cruds user/*.rs user/Observation.rs?category=laboratory")
	for _, tc := range []struct {
		sc   string
		want bool
	}{
		{"openid", true},
		{"profile", false},
		{"patient/Observation.rs", true},
		{"patient/*.cud", true},
		{"user/Patient.r", true},
		{"user/Patient.c", false},
		{"system/*.rs", false},
		{"user/Observation.rs?category=laboratory", true},
	} {
		sc, err := ParseOne(tc.sc)
		if err != nil {
			t.Fatal(err)
		}
		if got := ceiling.Covers(sc); got != tc.want {
			t.Errorf("Covers(%s) = %v", tc.sc, got)
		}
	}
	if (Set(nil)).Covers(MustParse("openid")[0]) {
		t.Error("empty ceiling covers")
	}
}
