// Package scope parses SMART App Launch scopes (v1 and v2 syntax, including
// granular v2 query scopes) and decides what a granted set of scopes allows
// on a FHIR REST interaction.
//
// Decisions where SMART leaves room:
//   - A scope token outside RFC 6749 §3.3's character set, or a resource
//     scope whose permission part is neither v1 (read, write, *) nor a
//     well-ordered v2 subset of "cruds", is a syntax error (invalid_scope).
//     Any other unknown scope is kept as an opaque scope and simply not
//     granted.
//   - v1 "read" allows read, vread, history and search; "write" allows
//     create, update and delete; "*" allows everything.
//   - v2 letters: c=create, r=read/vread/history, u=update, d=delete,
//     s=search.
//   - A granular query scope (patient/Observation.rs?category=laboratory)
//     grants search only when every parameter of the scope is present in
//     the request with values the scope allows. It never grants read,
//     vread or history by id: the resource server cannot know the matching
//     without the resource, so sim refuses rather than over-grants.
//   - patient/ scopes allow only within the launch patient's compartment
//     (the resource server enforces the compartment); user/ and system/
//     scopes allow everything their permissions say.
package scope
