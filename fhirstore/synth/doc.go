// Package synth generates the simulated world's two patient directories: the
// EHR's and the Other organisation's, as FHIR R4 JSON, plus the truth about
// which EHR patient is which Other record.
//
// Determinism. Everything is drawn from one math/rand source seeded with
// Config.Seed and used by one goroutine in a fixed order (the gofakeit
// generator wraps the same source), and every date is derived from
// Config.ReferenceDate: the same Config always yields byte-identical
// resources, whatever the machine or time of day. Seed 0 is an ordinary seed
// here (gofakeit.New(0) would seed from crypto/rand; this package never calls
// it). Only the JSON encoding runs on other goroutines, in batches that are
// put back together in generation order, so it cannot change the output.
//
// Volume: the EHR side has about 5.5 resources per patient (Patient,
// Encounter, 0–2 Conditions, a vital sign, sometimes a lab result, a
// MedicationRequest, an AllergyIntolerance, an Immunization); the Other side
// 2.5–4 depending on its kind (imaging: ImagingStudy + DiagnosticReport;
// lab: DiagnosticReport + its Observations; regional_record: Encounters and
// Conditions). Validation is not in the generation path: the tests validate
// every resource of a default-size world and a sample of a larger one.
//
// The overlap. Each EHR patient has a class:
//   - shared: one Other record carries the shared identifier (and Other's
//     own MRN); an identifier match finds exactly that record (Truth.OtherID);
//   - other_id_only: one Other record of the same person carries Other's MRN
//     only, so an identifier match finds nothing;
//   - ambiguous: two Other records of the same person (a duplicate
//     registration) both carry the shared identifier, so a match finds two;
//   - absent: the person has no Other record.
//
// Every EHR patient carries the EHR MRN and the shared identifier. Other-only
// patients (unknown to the EHR) carry Other's MRN and a shared identifier no
// EHR patient has. Class counts come from the fractions by the largest
// remainder method over the four classes (absent takes whatever the other
// three leave): each class gets floor(N·f) patients, and the patients left
// over go one each to the classes with the largest fractional parts, ties in
// the order shared, other_id_only, ambiguous, absent. So every count is
// within one of N·f and the counts add up to N. Demographics drift is applied
// to round(drift·pairs) of the (EHR patient, Other record) pairs of the
// first three classes, chosen at random: a typo in the family name, a new
// family name (marriage), or a birth date one day off.
//
// Identifiers in the JSON: resource ids are 1–64 characters of
// [A-Za-z0-9-.], a type prefix plus ten base-32 characters from a seeded
// permutation of a counter (unique, and revealing neither class nor order).
// The JSON is compact with keys sorted and no HTML escaping, like the
// canonical form google/fhir's marshaller writes; every resource passes
// google/fhir/go jsonformat R4 validation and every reference resolves within
// its own side (both are tested).
package synth
