// Package scenarios runs sim's worlds: it loads world and scenario files
// (strict YAML, every problem at file:line:column, a JSON Schema generated
// from the Go types), starts a world (Start: listen first, generate the
// directories, load the FHIR stores, start the authorization servers, the
// broker and the console, and wire the small interfaces each of them
// declares), serves the control API, injects faults between the servers,
// and drives flows against a running world: the scenario runner (Run), the
// comparison of the four directions (Compare) and the load driver (Load),
// all with a scripted golang.org/x/oauth2 app and a user who fills the real
// HTML forms.
package scenarios
