// sim Sample App: a SMART on FHIR app in plain JavaScript that reads two
// FHIR servers guarded by two authorization servers (flows.md, direction A).
//
//   1. EHR launch: the EHR opens /sample-app/launch?iss=…&launch=…
//   2. Discovery: {iss}/.well-known/smart-configuration names the EHR's
//      endpoints and the other server (associated_endpoints, or the brand
//      bundle).
//   3. Authorize at the EHR with the `launch-token` scope and
//      resource=<Other FHIR base>; exchange the code (PKCE S256).
//   4. The token response carries `launch_token`. Save everything in
//      sessionStorage, then authorize at OtherAS with launch=<launch_token>.
//   5. Exchange that code at OtherAS and read both servers side by side.
//
// No library, no framework: fetch, WebCrypto and sessionStorage.
"use strict";

const CLIENT_ID = "sim-sample-app";                      // the same client_id at both servers
const REDIRECT_URI = location.origin + "/sample-app/callback";
const EHR_SCOPE = "launch launch-token openid fhirUser patient/*.rs user/*.rs";
const OTHER_SCOPE = "launch openid fhirUser patient/*.rs user/*.rs";
const STORE = "sim-sample-app";                          // sessionStorage key
const STEPS = ["Discovery", "EHR sign-in", "EHR token", "Other sign-in", "Other token", "Read both servers"];

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

// el builds an element; strings become text nodes (never HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(nBytes) {
  return base64url(crypto.getRandomValues(new Uint8Array(nBytes)));
}

// PKCE (RFC 7636) with S256: the verifier stays here, the challenge travels.
async function pkcePair() {
  const verifier = randomString(32);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

// jwtClaims decodes a JWT's payload for display. It does not verify it:
// the launch-token is for OtherAS, which checks it at the EHR.
function jwtClaims(jwt) {
  try {
    const b64 = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

async function getJSON(url, accessToken) {
  const headers = { Accept: "application/fhir+json, application/json" };
  if (accessToken) headers.Authorization = "Bearer " + accessToken;
  const res = await fetch(url, { headers });
  return { status: res.status, body: await res.json().catch(() => null) };
}

// tokenRequest posts to a token endpoint (public client: client_id, no secret).
async function tokenRequest(endpoint, params) {
  const res = await fetch(endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams(params),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`the token endpoint answered ${res.status}: ${body.error || ""} ${body.error_description || ""}`);
  return body;
}

const save = (state) => sessionStorage.setItem(STORE, JSON.stringify(state));
const load = () => JSON.parse(sessionStorage.getItem(STORE) || "null");

// ------------------------------------------------------------- the screen

function progress(done, failedAt) {
  $("steps").replaceChildren(...STEPS.map((name, i) =>
    el("li", { class: i < done ? "done" : i === failedAt ? "failed" : "" }, (i < done ? "✓ " : "") + name)));
}

function status(heading, text) {
  $("heading").textContent = heading;
  $("status").textContent = text;
}

class Stop extends Error {}

function fail(heading, text, step) {
  status(heading, text);
  $("status").classList.add("alert");
  $("status").setAttribute("role", "alert");
  $("result").dataset.state = "failed";
  if (step !== undefined) progress(step, step);
  throw new Stop(text);
}

function go(url) {
  // The authorization servers refuse to be framed (clickjacking defence),
  // so an app running in the EHR frame authorizes at the top level.
  if (window.top !== window.self) window.top.location.assign(url);
  else location.assign(url);
}

function authorizeURL(endpoint, params) {
  const u = new URL(endpoint);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

// ------------------------------------------------------------- the flow

// launch: /sample-app/launch?iss=…&launch=… (SMART "EHR launch").
async function launch(params) {
  const iss = params.get("iss");
  const launchID = params.get("launch");
  if (!iss || !launchID) fail("Not launched", "Launch this app from an EHR: it needs iss and launch.", 0);
  progress(0);
  status("Launching…", "Reading " + iss + "/.well-known/smart-configuration");

  const ehrConf = (await getJSON(iss + "/.well-known/smart-configuration")).body;
  if (!ehrConf || !ehrConf.authorization_endpoint) fail("Discovery failed", "The EHR's smart-configuration could not be read.", 0);
  const otherBase = await findOtherServer(iss, ehrConf);

  const { verifier, challenge } = await pkcePair();
  const state = randomString(16);
  save({ step: "ehr", iss, ehrConf, otherBase, verifier, state });

  status("Signing in at the EHR…", "Sending you to " + ehrConf.authorization_endpoint);
  go(authorizeURL(ehrConf.authorization_endpoint, {
    response_type: "code",
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: EHR_SCOPE,              // launch-token: ask for a launch_token in the token response
    state,
    aud: iss,
    launch: launchID,
    resource: otherBase,           // RFC 8707: the launch-token is addressed to this server's AS
    code_challenge: challenge,
    code_challenge_method: "S256",
  }));
}

// findOtherServer finds the second FHIR server: the EHR's discovery names
// it in associated_endpoints; the brand bundle lists it too.
async function findOtherServer(iss, ehrConf) {
  const same = (a, b) => a.replace(/\/$/, "") === b.replace(/\/$/, "");
  for (const ep of ehrConf.associated_endpoints || []) {
    if (ep.url && !same(ep.url, iss)) return ep.url;
  }
  if (ehrConf.user_access_brand_bundle) {
    const bundle = (await getJSON(ehrConf.user_access_brand_bundle)).body;
    for (const entry of (bundle && bundle.entry) || []) {
      const r = entry.resource || {};
      if (r.resourceType === "Endpoint" && r.address && !same(r.address, iss)) return r.address;
    }
  }
  fail("No second server", "The EHR's discovery names no other FHIR server.", 0);
}

// callback: /sample-app/callback?code=…&state=…&iss=… from either server.
async function callback(params) {
  const saved = load();
  if (!saved) fail("Nothing to continue", "No launch in progress in this tab. Launch the app again from the EHR.", 0);
  if (saved.step === "done") return show(saved);

  const atEHR = saved.step === "ehr";
  const conf = atEHR ? saved.ehrConf : saved.otherConf;
  const stepIndex = atEHR ? 1 : 3;

  // Mix-up defence (RFC 9207): the response names the AS that sent it.
  // This app talks to two ASes, so it checks which one is answering...
  const iss = params.get("iss");
  if (iss !== conf.issuer && !(iss === null && !conf.authorization_response_iss_parameter_supported)) {
    fail("Wrong authorization server", `The response comes from ${iss}, but this app is waiting for ${conf.issuer}.`, stepIndex);
  }
  // ...and then removes iss (with code and state) from the address bar, so
  // nothing later mistakes it for a new launch's iss (flows.md: mix-up defence).
  history.replaceState(null, "", location.pathname);

  if (params.get("state") !== saved.state) fail("State mismatch", "The response does not belong to this app's request.", stepIndex);
  if (params.get("error")) {
    const why = `${params.get("error")}: ${params.get("error_description") || "no description"}`;
    if (atEHR) fail("The EHR said no", why, stepIndex);
    // Refused at OtherAS: still show what the EHR gave.
    const done = { ...saved, step: "done", otherError: why };
    save(done);
    return show(done);
  }
  const code = params.get("code");

  if (atEHR) {
    progress(2);
    status("Getting the EHR token…", conf.token_endpoint);
    const ehrToken = await tokenRequest(conf.token_endpoint, {
      grant_type: "authorization_code", code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: saved.verifier,
    });
    if (!ehrToken.launch_token) {
      const done = { ...saved, step: "done", ehrToken, otherError: "the EHR granted no launch-token (scope: " + ehrToken.scope + ")" };
      save(done);
      return show(done);
    }
    // Second launch: discover OtherAS from the Other FHIR base.
    const otherConf = (await getJSON(saved.otherBase + "/.well-known/smart-configuration")).body;
    if (!otherConf || !otherConf.authorization_endpoint) fail("Discovery failed", "The other server's smart-configuration could not be read.", 3);
    const { verifier, challenge } = await pkcePair();
    const state = randomString(16);
    // Everything needed after the round trip is saved before leaving.
    save({ ...saved, step: "other", ehrToken, otherConf, verifier, state });
    progress(3);
    status("Signing in at the other server…", "Sending you to " + otherConf.authorization_endpoint);
    return go(authorizeURL(otherConf.authorization_endpoint, {
      response_type: "code",
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT_URI,
      scope: OTHER_SCOPE,
      state,
      aud: saved.otherBase,
      launch: ehrToken.launch_token, // the launch-token is this launch's context
      code_challenge: challenge,
      code_challenge_method: "S256",
    }));
  }

  progress(4);
  status("Getting the other server's token…", conf.token_endpoint);
  const otherToken = await tokenRequest(conf.token_endpoint, {
    grant_type: "authorization_code", code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: saved.verifier,
  });
  const done = { ...saved, step: "done", otherToken };
  delete done.verifier;
  save(done);
  return show(done);
}

// ------------------------------------------------------------- the result

const CLINICAL_EHR = ["Condition", "Observation", "MedicationRequest"];
const CLINICAL_OTHER = ["ImagingStudy", "DiagnosticReport", "Observation", "Condition"];

function text(r) {
  const cc = r.code || r.medicationCodeableConcept || r.type || (r.modality && r.modality[0]);
  const concept = Array.isArray(cc) ? cc[0] : cc;
  const label = concept && (concept.text || concept.display || (concept.coding && concept.coding[0] && (concept.coding[0].display || concept.coding[0].code)));
  return label || r.description || r.conclusion || r.resourceType + "/" + r.id;
}

function when(r) {
  const d = r.effectiveDateTime || r.onsetDateTime || r.authoredOn || r.started || r.issued || r.recordedDate || "";
  return d.slice(0, 10);
}

function patientName(p) {
  const n = (p.name || [])[0] || {};
  return [(n.given || []).join(" "), n.family].filter(Boolean).join(" ") || p.id;
}

// readServer reads the Patient and a few clinical resources at one server.
async function readServer(base, token, patient, types) {
  const out = { patient: null, status: null, resources: [] };
  const p = await getJSON(base + "/Patient/" + encodeURIComponent(patient), token);
  out.status = p.status;
  if (p.status === 200) out.patient = p.body;
  for (const type of types) {
    const b = await getJSON(`${base}/${type}?patient=${encodeURIComponent(patient)}&_count=3`, token);
    for (const e of (b.status === 200 && b.body.entry) || []) out.resources.push(e.resource);
  }
  return out;
}

// truncated shows a token response with every token shortened.
function truncated(resp) {
  const copy = { ...resp };
  for (const k of ["access_token", "refresh_token", "id_token", "launch_token"]) {
    if (typeof copy[k] === "string") copy[k] = copy[k].slice(0, 16) + "… (" + copy[k].length + " chars)";
  }
  return JSON.stringify(copy, null, 2);
}

function patientPanel(title, base, data, patientID) {
  const p = data.patient;
  const ids = ((p && p.identifier) || []).map((i) => el("li", {}, el("code", {}, i.value), " ", el("span", { class: "muted" }, i.system)));
  return el("section", { class: "c-panel app-ok", "aria-label": title },
    el("h2", {}, title),
    el("p", { class: "muted" }, base),
    p ? [el("h3", { "data-patient": patientID }, patientName(p), " · ", p.gender || "", " · born ", p.birthDate || "?"),
      el("ul", { class: "c-plain" }, ids)]
      : el("p", { class: "alert" }, `Patient/${patientID}: HTTP ${data.status}`),
    el("table", { class: "c-table" }, el("tbody", {}, data.resources.length
      ? data.resources.map((r) => el("tr", {}, el("td", {}, r.resourceType), el("td", {}, text(r)), el("td", { class: "muted" }, when(r))))
      : el("tr", {}, el("td", {}, "No clinical resources found.")))));
}

// refusalReason asks sim's own trace why OtherAS refused. A real app only
// sees the granted scope; the reason is on OtherAS's consent page.
async function refusalReason() {
  try {
    const { body } = await getJSON("/api/traces?limit=10");
    for (const f of body.flows || []) {
      for (const e of [...f.events].reverse()) {
        if (e.from === "OtherAS" && e.kind === "decision" && /refused|denied/.test(e.decision)) return e.decision;
      }
    }
  } catch { /* the reason is a convenience */ }
  return null;
}

async function show(s) {
  progress(5);
  status("Reading both servers…", "");
  const result = $("result");
  const ehr = s.ehrToken;
  const other = s.otherToken;
  const cols = el("div", { class: "app-cols" });

  const ehrData = ehr && ehr.patient ? await readServer(s.iss, ehr.access_token, ehr.patient, CLINICAL_EHR) : null;
  cols.append(ehrData ? patientPanel("EHR", s.iss, ehrData, ehr.patient)
    : el("section", { class: "c-panel app-refused" }, el("h2", {}, "EHR"), el("p", {}, "The EHR token names no patient.")));

  const granted = ((other && other.scope) || "").split(" ");
  const patientGranted = other && other.patient && granted.some((x) => x.startsWith("patient/"));
  if (patientGranted) {
    cols.append(patientPanel("Other server", s.otherBase, await readServer(s.otherBase, other.access_token, other.patient, CLINICAL_OTHER), other.patient));
    result.dataset.other = "granted";
  } else {
    const reason = await refusalReason();
    cols.append(el("section", { class: "c-panel app-refused", id: "refusal", "aria-label": "Refused at the other server" },
      el("h2", {}, "Other server"), el("p", { class: "muted" }, s.otherBase),
      el("h3", {}, "No patient access at the other server"),
      s.otherError ? el("p", {}, "The other server answered: ", el("code", {}, s.otherError))
        : el("p", {}, "Asked for ", el("code", {}, OTHER_SCOPE), "; granted ", el("code", {}, (other && other.scope) || "nothing"),
          ". No patient scope and no ", el("code", {}, "patient"), " in the token response: OtherAS did not find exactly one record of this patient in its directory."),
      reason ? el("p", {}, "Reason (from sim's trace): ", el("strong", {}, reason)) : null,
      el("p", {}, el("a", { href: "/traces" }, "See the flow in the console's traces"))));
    result.dataset.other = "refused";
  }

  const tokens = el("div", { class: "app-cols" });
  if (ehr) tokens.append(el("section", { class: "c-panel" }, el("h2", {}, "EHR token response"), el("pre", { class: "c-pre" }, truncated(ehr))));
  if (other) tokens.append(el("section", { class: "c-panel" }, el("h2", {}, "Other token response"), el("pre", { class: "c-pre" }, truncated(other))));
  const claims = ehr && ehr.launch_token ? jwtClaims(ehr.launch_token) : null;
  if (claims) {
    tokens.append(el("section", { class: "c-panel" }, el("h2", {}, "Launch-token claims"),
      el("p", { class: "muted" }, "Decoded, not verified: OtherAS checks it by introspection at the EHR."),
      el("pre", { class: "c-pre", id: "launch-token-claims" }, JSON.stringify(claims, null, 2))));
  }

  result.replaceChildren(cols, tokens);
  progress(STEPS.length);
  result.dataset.state = "done";
  status(patientGranted ? "Data from both servers" : "Data from the EHR; refused at the other server",
    patientGranted ? "One launch at the EHR, a second one at the other server with the launch-token." : "The other server granted no patient access.");
}

async function main() {
  const params = new URLSearchParams(location.search);
  try {
    if (location.pathname.endsWith("/launch")) await launch(params);
    else await callback(params);
  } catch (err) {
    if (!(err instanceof Stop)) {
      try { fail("Something went wrong", err.message); } catch { /* shown */ }
    }
  }
}

main();
