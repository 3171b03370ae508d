// Package seqdiag draws a recorded flow (trace.Flow) as a sequence diagram:
// a standalone SVG document that sim renders itself, and the same diagram as
// Mermaid text for Markdown pages.
//
// The lifelines are the parties of the draft's diagrams, in the order of
// trace.Parties (User, App, Brands, EHR FHIR, EHR AS, Other FHIR, OtherAS);
// by default only the parties a flow involves are drawn. An HTTP exchange is
// a request arrow with its label and a dashed response arrow with its
// status; a decision is a note on the deciding party's lifeline; a user
// interaction is an arrow from the user. Events marked as errors (refusals,
// failed requests) and 4xx/5xx responses are drawn in red.
//
// Output is deterministic: the same flow gives the same bytes. Every piece
// of text from the trace is escaped (XML in SVG, entity codes in Mermaid)
// and clipped, so hostile labels cannot change the document's structure.
package seqdiag
