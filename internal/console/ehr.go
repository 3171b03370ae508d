package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// session is a signed-in user of the simulated EHR.
type session struct {
	user    User
	csrf    string
	expires time.Time
}

const sessionLifetime = 8 * time.Hour

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the request's console session, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if c.cfg.Now().After(s.expires) {
		delete(c.sessions, ck.Value)
		return nil
	}
	return s
}

func (c *Console) newSession(w http.ResponseWriter, u User) {
	id := randomString()
	now := c.cfg.Now()
	c.mu.Lock()
	for k, s := range c.sessions { // drop expired sessions on the way
		if now.After(s.expires) {
			delete(c.sessions, k)
		}
	}
	c.sessions[id] = &session{user: u, csrf: randomString(), expires: now.Add(sessionLifetime)}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: int(sessionLifetime / time.Second)})
}

// checkForm verifies a form post in a session: same origin and CSRF token.
func (c *Console) checkForm(w http.ResponseWriter, r *http.Request) (*session, bool) {
	if !c.sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "Request refused", "The form was not sent from the console.")
		return nil, false
	}
	s := c.session(r)
	if s == nil {
		http.Redirect(w, r, "/ehr", http.StatusSeeOther)
		return nil, false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
		c.fail(w, r, http.StatusForbidden, "Request refused", "The form has expired. Go back, reload the page and try again.")
		return nil, false
	}
	return s, true
}

type loginPage struct {
	base
	Username, Error string
	Users           []User
}

type patientRow struct {
	Patient
	Summary
}

type patientsPage struct {
	base
	Query    string
	Class    string
	Classes  []string
	Patients []patientRow
	Error    string
}

var classOrder = []string{"shared", "other_id_only", "ambiguous", "absent"}

// ehrHome is the simulated EHR: the sign-in form, then the patient list
// (a portal user goes to their own chart).
func (c *Console) ehrHome(w http.ResponseWriter, r *http.Request) {
	s := c.session(r)
	if s == nil {
		c.render(w, r, http.StatusOK, "ehr_login.html", loginPage{base: c.base("Sign in to the EHR", "ehr", nil), Users: c.cfg.Users})
		return
	}
	if id := s.user.PatientID(); id != "" {
		http.Redirect(w, r, "/ehr/patients/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	class := r.URL.Query().Get("class")
	page := patientsPage{base: c.base("Patients", "ehr", s), Query: q, Class: class, Classes: classOrder}
	ctx := r.Context()
	if class != "" {
		// A class filter lists the world's truth, which the EHR search
		// cannot express.
		for _, p := range c.cfg.Patients {
			if p.Class != class {
				continue
			}
			raw, err := c.cfg.EHR.Read(ctx, "Patient", p.EHRID)
			if err != nil {
				continue
			}
			page.Patients = append(page.Patients, patientRow{Patient: p, Summary: c.summary(raw)})
			if len(page.Patients) == 25 {
				break
			}
		}
	} else {
		params := url.Values{"_count": {"25"}}
		if q != "" {
			params.Set("name", q)
		}
		res, err := c.cfg.EHR.Search(ctx, "Patient", params)
		if err != nil {
			c.cfg.Logger.ErrorContext(ctx, "search EHR patients", "err", err)
			page.Error = "The search did not work. Try another name."
		}
		for _, raw := range res {
			sum := c.summary(raw)
			p := Patient{EHRID: sum.ID}
			if i, ok := c.byEHRID[sum.ID]; ok {
				p = c.cfg.Patients[i]
			}
			page.Patients = append(page.Patients, patientRow{Patient: p, Summary: sum})
		}
	}
	c.render(w, r, http.StatusOK, "ehr_patients.html", page)
}

func (c *Console) userByName(name string) (User, bool) {
	for _, u := range c.cfg.Users {
		if u.Username == name {
			return u, true
		}
	}
	return User{}, false
}

func (c *Console) ehrLogin(w http.ResponseWriter, r *http.Request) {
	if !c.sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "Request refused", "The form was not sent from the console.")
		return
	}
	name, pass := r.PostFormValue("username"), r.PostFormValue("password")
	u, ok := c.userByName(name)
	want := u.Password
	if !ok {
		want = "\x00unknown"
	}
	if subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 || !ok {
		c.render(w, r, http.StatusUnauthorized, "ehr_login.html", loginPage{base: c.base("Sign in to the EHR", "ehr", nil),
			Username: name, Error: "Unknown username or wrong password.", Users: c.cfg.Users})
		return
	}
	c.newSession(w, u)
	http.Redirect(w, r, "/ehr", http.StatusSeeOther)
}

func (c *Console) ehrLogout(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.checkForm(w, r); !ok {
		return
	}
	if ck, err := r.Cookie(SessionCookie); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	http.Redirect(w, r, "/ehr", http.StatusSeeOther)
}

type chartPage struct {
	base
	Patient    Patient
	Summary    Summary
	Sections   []section
	Encounters []row
	Apps       []App
}

type section struct {
	Title string
	Rows  []row
}

// chartTypes are the clinical resources a chart shows, in order.
var chartTypes = []struct{ Type, Title string }{
	{"Condition", "Problems"},
	{"Observation", "Observations"},
	{"MedicationRequest", "Medications"},
	{"AllergyIntolerance", "Allergies"},
	{"Immunization", "Immunizations"},
}

// allowedPatient tells whether s may open patient id: clinicians any,
// portal users their own record.
func allowedPatient(s *session, id string) bool {
	own := s.user.PatientID()
	return own == "" || own == id
}

func (c *Console) chart(w http.ResponseWriter, r *http.Request) {
	s := c.session(r)
	if s == nil {
		http.Redirect(w, r, "/ehr", http.StatusSeeOther)
		return
	}
	id := r.PathValue("id")
	if !allowedPatient(s, id) {
		c.fail(w, r, http.StatusForbidden, "Not your record", "A patient portal account opens only its own record.")
		return
	}
	ctx := r.Context()
	raw, err := c.cfg.EHR.Read(ctx, "Patient", id)
	if err != nil {
		c.fail(w, r, http.StatusNotFound, "No such patient", "The EHR has no patient with this id.")
		return
	}
	page := chartPage{base: c.base("Chart", "ehr", s), Summary: c.summary(raw), Patient: Patient{EHRID: id}, Apps: c.launchableApps()}
	if i, ok := c.byEHRID[id]; ok {
		page.Patient = c.cfg.Patients[i]
	}
	page.Title = page.Summary.Name
	for _, ct := range chartTypes {
		res, err := c.cfg.EHR.Search(ctx, ct.Type, url.Values{"patient": {id}, "_count": {"8"}})
		if err != nil {
			c.cfg.Logger.ErrorContext(ctx, "search chart resources", "type", ct.Type, "err", err)
			continue
		}
		sec := section{Title: ct.Title}
		for _, x := range res {
			sec.Rows = append(sec.Rows, describe(x))
		}
		page.Sections = append(page.Sections, sec)
	}
	if res, err := c.cfg.EHR.Search(ctx, "Encounter", url.Values{"patient": {id}, "_count": {"10"}, "_sort": {"-date"}}); err == nil {
		for _, x := range res {
			page.Encounters = append(page.Encounters, describe(x))
		}
	}
	c.render(w, r, http.StatusOK, "chart.html", page)
}

// launchableApps are the apps an EHR launch can open: those registered at
// the EHR with a launch URL.
func (c *Console) launchableApps() []App {
	var out []App
	for _, a := range c.allApps() {
		if a.LaunchURL != "" && slices.Contains(a.RegisteredAt, "ehr") {
			out = append(out, a)
		}
	}
	return out
}

func (c *Console) allApps() []App {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(slices.Clone(c.cfg.Apps), c.apps...)
}

type framePage struct {
	base
	Summary Summary
	AppName string
	URL     string
}

// launch creates an EHR launch (SMART App Launch "EHR launch") and opens
// the app: a redirect (the form targets a new tab) or the EHR frame.
func (c *Console) launch(w http.ResponseWriter, r *http.Request) {
	s, ok := c.checkForm(w, r)
	if !ok {
		return
	}
	patient, clientID := r.PostFormValue("patient"), r.PostFormValue("client_id")
	if !allowedPatient(s, patient) {
		c.fail(w, r, http.StatusForbidden, "Not your record", "A patient portal account launches apps only for its own record.")
		return
	}
	var app *App
	for _, a := range c.launchableApps() {
		if a.ClientID == clientID {
			app = &a
			break
		}
	}
	if app == nil {
		c.fail(w, r, http.StatusBadRequest, "Unknown app", "Choose one of the apps registered at the EHR.")
		return
	}
	u, err := c.cfg.Launcher.NewLaunch(r.Context(), LaunchRequest{ClientID: app.ClientID, Patient: patient, User: s.user.Username, Encounter: r.PostFormValue("encounter")})
	if err != nil {
		c.cfg.Logger.WarnContext(r.Context(), "create EHR launch", "client_id", app.ClientID, "err", err)
		c.fail(w, r, http.StatusBadRequest, "The app could not be launched", "The EHR refused this launch (unknown patient or encounter, or the app has no launch URL).")
		return
	}
	if r.PostFormValue("mode") != "frame" {
		http.Redirect(w, r, u, http.StatusSeeOther)
		return
	}
	page := framePage{base: c.base(app.Name, "ehr", s), AppName: app.Name, URL: u}
	if raw, err := c.cfg.EHR.Read(r.Context(), "Patient", patient); err == nil {
		page.Summary = c.summary(raw)
	}
	c.render(w, r, http.StatusOK, "frame.html", page)
}

// Summary is the banner of a patient.
type Summary struct {
	ID, Name, Gender, BirthDate string
	Identifiers                 []LabeledIdentifier
}

// LabeledIdentifier is an identifier with a label for people.
type LabeledIdentifier struct {
	Label, System, Value string
}

func (c *Console) summary(raw json.RawMessage) Summary {
	var p struct {
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
	if json.Unmarshal(raw, &p) != nil {
		return Summary{Name: "(unreadable record)"}
	}
	s := Summary{ID: p.ID, Gender: p.Gender, BirthDate: p.BirthDate, Name: p.ID}
	for i, n := range p.Name {
		if i == 0 || n.Use == "official" {
			s.Name = strings.TrimSpace(strings.Join(n.Given, " ") + " " + n.Family)
		}
	}
	for _, id := range p.Identifier {
		s.Identifiers = append(s.Identifiers, LabeledIdentifier{Label: c.systemLabel(id.System), System: id.System, Value: id.Value})
	}
	return s
}

// row is one clinical resource in plain words.
type row struct {
	Type, ID, Text, Date, Value, Status string
}

// describe picks the display fields of a FHIR resource.
func describe(raw json.RawMessage) row {
	var x map[string]any
	if json.Unmarshal(raw, &x) != nil {
		return row{Text: "(unreadable resource)"}
	}
	r := row{Type: str(x["resourceType"]), ID: str(x["id"]), Status: str(x["status"])}
	for _, k := range []string{"code", "medicationCodeableConcept", "vaccineCode", "type", "class"} {
		if t := conceptText(x[k]); t != "" {
			r.Text = t
			break
		}
	}
	for _, k := range []string{"effectiveDateTime", "onsetDateTime", "authoredOn", "occurrenceDateTime", "recordedDate", "started", "issued"} {
		if d := str(x[k]); d != "" {
			r.Date = d
			break
		}
	}
	if r.Date == "" {
		if p, ok := x["period"].(map[string]any); ok {
			r.Date = str(p["start"])
		}
	}
	if len(r.Date) > 10 {
		r.Date = r.Date[:10]
	}
	if q, ok := x["valueQuantity"].(map[string]any); ok {
		r.Value = strings.TrimSpace(num(q["value"]) + " " + str(q["unit"]))
	} else if s := conceptText(x["valueCodeableConcept"]); s != "" {
		r.Value = s
	} else if s := str(x["conclusion"]); s != "" {
		r.Value = s
	}
	if r.Status == "" {
		r.Status = conceptText(x["clinicalStatus"])
	}
	return r
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) string {
	switch n := v.(type) {
	case float64:
		b, _ := json.Marshal(n)
		return string(b)
	case string:
		return n
	}
	return ""
}

// conceptText renders a CodeableConcept, a Coding, or a list of either.
func conceptText(v any) string {
	switch t := v.(type) {
	case []any:
		if len(t) > 0 {
			return conceptText(t[0])
		}
	case map[string]any:
		if s := str(t["text"]); s != "" {
			return s
		}
		if s := str(t["display"]); s != "" {
			return s
		}
		if cs, ok := t["coding"].([]any); ok && len(cs) > 0 {
			return conceptText(cs[0])
		}
		return str(t["code"])
	}
	return ""
}
