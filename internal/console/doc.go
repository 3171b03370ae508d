// Package console is sim's web console, served on the console origin: the
// ecosystem at a glance (servers, discovery documents, demo logins, apps,
// the settings a SMART client library needs), a simulated EHR (clinician
// and patient-portal sign-in, patient search, charts, EHR launches in a new
// tab or an EHR frame, app registration at one or both authorization
// servers), the two patient directories and their overlap, live traces
// with sequence diagrams, the bundled scenarios, and the built-in sample
// app (a plain-JavaScript SMART app under /sample-app/).
//
// The console never imports the domain packages: the wiring hands it a
// Config with the world's facts and small seams (Store, Launcher,
// ScenarioRunner). It talks to the authorization servers like any app does,
// over HTTP (discovery, RFC 7591 registration).
//
// Documented choices:
//   - The console has its own session cookie, sim_console_session, distinct
//     from the authorization servers' cookies (cookies are not isolated by
//     port). Signing in to the simulated EHR signs nobody in at an
//     authorization server: an EHR launch carries its user.
//   - Every POST must come from the console's own origin (Origin or
//     Referer), and forms inside a session carry a CSRF token.
//   - Pages work without JavaScript; JavaScript adds copy buttons and the
//     live trace list (server-sent events).
//   - The authorization servers refuse to be framed (a clickjacking
//     defence), so an app launched in the EHR frame leaves the frame to
//     authorize; the sample app does so at the top level.
package console
