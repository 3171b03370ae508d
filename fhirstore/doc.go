// Package fhirstore is sim's FHIR R4 server: a Store that keeps every
// version of every resource and its search index in one SQLite file, the
// Codec that parses and validates R4 JSON with google/fhir's jsonformat, and
// the REST API (NewHandler) on httprouter.
//
// Writes are parsed and validated once and stored in jsonformat's canonical
// form with id and meta set by the server; reads serve the stored bytes and
// search Bundles splice them in, so nothing is re-parsed on the read path.
// Search parameters are parsed into a typed query before any SQL is built;
// index rows (token, string, date, reference) are written in the write's
// transaction and belong to one version. A search sees the versions live at
// one write sequence number (its snapshot), which paging links carry, so
// pages stay stable while other clients write.
//
// Security is a seam: the package declares TokenVerifier and Grant and
// enforces scope checks and the patient compartment; the wiring supplies a
// verifier for the issuing authorization server.
package fhirstore
