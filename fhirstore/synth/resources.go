package synth

import (
	"strconv"
	"time"
)

func patientJSON(p person, ids []Identifier, mrnSystem, orgID, gpID string) obj {
	idents := make(arr, 0, len(ids))
	for _, id := range ids {
		i := obj{{"system", id.System}, {"value", id.Value}}
		if id.System == mrnSystem {
			i = append(i, kv{"use", "usual"})
			i = append(i, kv{"type", code{sysV2IDType, "MR", "Medical record number"}.concept()})
		} else {
			i = append(i, kv{"use", "official"})
			i = append(i, kv{"type", code{sysV2IDType, "NI", "National unique individual identifier"}.concept()})
		}
		idents = append(idents, i)
	}
	given := make(arr, len(p.given))
	for i, s := range p.given {
		given[i] = s
	}
	marital := code{sysMarital, "S", "Never Married"}
	if p.maritalMarried {
		marital = code{sysMarital, "M", "Married"}
	}
	pat := obj{
		{"identifier", idents},
		{"active", true},
		{"name", arr{obj{{"use", "official"}, {"family", p.family}, {"given", given}}}},
		{"telecom", arr{
			obj{{"system", "phone"}, {"value", p.phone}, {"use", "home"}},
			obj{{"system", "email"}, {"value", p.email}},
		}},
		{"gender", p.gender},
		{"birthDate", fhirDate(p.birth)},
		{"address", arr{obj{
			{"use", "home"}, {"line", arr{p.line}}, {"city", p.city}, {"state", p.state},
			{"postalCode", p.zip}, {"country", "US"},
		}}},
		{"maritalStatus", marital.concept()},
		{"managingOrganization", ref("Organization", orgID)},
	}
	if gpID != "" {
		pat = append(pat, kv{"generalPractitioner", arr{ref("Practitioner", gpID)}})
	}
	return pat
}

func (g *generator) practitioner(s *sink, side, given, family string) string {
	id := g.newID(side, "Practitioner")
	s.add("Practitioner", id, obj{
		{"identifier", arr{obj{{"system", sysNPI}, {"value", npi(g.f)}}}},
		{"active", true},
		{"name", arr{obj{{"use", "official"}, {"family", family}, {"given", arr{given}}, {"prefix", arr{"Dr."}}}}},
		{"telecom", arr{obj{{"system", "email"}, {"value", emailFor(given, family, 0)}, {"use", "work"}}}},
	})
	return id
}

func (g *generator) organization(s *sink, side string, sc SideConfig, typ code, endpoints ...string) string {
	id := g.newID(side, "Organization")
	eps := make(arr, len(endpoints))
	for i, e := range endpoints {
		eps[i] = ref("Endpoint", e)
	}
	o := obj{
		{"identifier", arr{obj{{"system", sysNPI}, {"value", npi(g.f)}}}},
		{"active", true},
		{"type", arr{typ.concept()}},
		{"name", sc.Name},
		{"telecom", arr{obj{{"system", "phone"}, {"value", "(555) 010-" + strconv.Itoa(1000+g.f.Rand.Intn(9000))}, {"use", "work"}}}},
		{"address", arr{obj{{"line", arr{g.f.Street()}}, {"city", g.f.City()}, {"state", g.f.StateAbr()}, {"postalCode", g.f.Zip()}, {"country", "US"}}}},
	}
	if len(eps) > 0 {
		o = append(o, kv{"endpoint", eps})
	}
	s.add("Organization", id, o)
	return id
}

func endpointJSON(name, orgID, address string, conn code, mime string) obj {
	return obj{
		{"status", "active"},
		{"connectionType", conn.coding()},
		{"name", name},
		{"managingOrganization", ref("Organization", orgID)},
		{"payloadType", arr{code{sysEndpointLoad, "any", "Any"}.concept()}},
		{"payloadMimeType", arr{mime}},
		{"address", address},
	}
}

func placeholderBase(side string, sc SideConfig) string {
	if sc.FHIRBase != "" {
		return sc.FHIRBase
	}
	return "https://" + side + ".sim.invalid/fhir"
}

var fhirREST = code{sysEndpointConn, "hl7-fhir-rest", "HL7 FHIR"}

// ehrInfrastructure writes the EHR Organization and its FHIR Endpoint.
// Organization and Endpoint refer to each other, so the ids come first.
func (g *generator) ehrInfrastructure() {
	sc := g.cfg.EHR
	g.ehrEndpoint = g.newID("ehr", "Endpoint")
	g.ehrOrg = g.organization(g.ehr, "ehr", sc, code{sysOrgType, "prov", "Healthcare Provider"}, g.ehrEndpoint)
	g.ehr.add("Endpoint", g.ehrEndpoint, endpointJSON(sc.Name+" FHIR API", g.ehrOrg, placeholderBase("ehr", sc), fhirREST, "application/fhir+json"))
}

func (g *generator) otherInfrastructure() {
	sc := g.cfg.Other
	g.otherEndpoint = g.newID("other", "Endpoint")
	eps := []string{g.otherEndpoint}
	if sc.Kind == KindImaging {
		g.dicomEndpoint = g.newID("other", "Endpoint")
		eps = append(eps, g.dicomEndpoint)
	}
	orgType := map[string]code{
		KindImaging:        {sysOrgType, "prov", "Healthcare Provider"},
		KindLab:            {sysOrgType, "prov", "Healthcare Provider"},
		KindRegionalRecord: {sysOrgType, "other", "Other"},
	}[sc.Kind]
	g.otherOrg = g.organization(g.other, "other", sc, orgType, eps...)
	base := placeholderBase("other", sc)
	g.other.add("Endpoint", g.otherEndpoint, endpointJSON(sc.Name+" FHIR API", g.otherOrg, base, fhirREST, "application/fhir+json"))
	if sc.Kind == KindImaging {
		g.other.add("Endpoint", g.dicomEndpoint, endpointJSON(sc.Name+" DICOMweb", g.otherOrg, base[:len(base)-len("/fhir")]+"/dicom-web",
			code{sysEndpointConn, "dicom-wado-rs", "DICOM WADO-RS"}, "application/dicom"))
		for range 3 {
			g.otherStaff = append(g.otherStaff, g.practitioner(g.other, "other", g.f.FirstName(), g.f.LastName()))
		}
	}
}

// ---- EHR clinical data: about 4.5 resources per patient ----

func (g *generator) ehrClinical(patID, gpID string, birth time.Time) {
	f := g.f
	s := g.ehr
	subject := ref("Patient", patID)

	encID, start := g.encounter(s, "ehr", 3*365, subject, birth, g.ehrOrg,
		kv{"participant", arr{obj{{"individual", ref("Practitioner", gpID)}}}})
	encRef := ref("Encounter", encID)

	var condIDs []string
	var condIdx []int
	for range f.Rand.Intn(3) {
		ci := f.Rand.Intn(len(conditions))
		id := g.newID("ehr", "Condition")
		onset := g.ref.AddDate(-f.Rand.Intn(10), 0, -f.Rand.Intn(365))
		if onset.After(start) {
			onset = start
		}
		if onset.Before(birth) {
			onset = birth
		}
		s.add("Condition", id, obj{
			{"clinicalStatus", code{sysCondClinical, "active", "Active"}.concept()},
			{"verificationStatus", code{sysCondVer, "confirmed", "Confirmed"}.concept()},
			{"category", arr{code{sysCondCategory, "encounter-diagnosis", "Encounter Diagnosis"}.concept()}},
			{"code", conditions[ci].concept()},
			{"subject", subject},
			{"encounter", encRef},
			{"onsetDateTime", fhirDate(onset)},
			{"recordedDate", fhirDateTime(start)},
		})
		condIDs = append(condIDs, id)
		condIdx = append(condIdx, ci)
	}

	// One vital sign: blood pressure half the time.
	vs := obj{
		{"status", "final"},
		{"category", arr{code{sysObsCategory, "vital-signs", "Vital Signs"}.concept()}},
		{"subject", subject},
		{"encounter", encRef},
		{"effectiveDateTime", fhirDateTime(start.Add(10 * time.Minute))},
		{"performer", arr{ref("Practitioner", gpID)}},
	}
	if f.Rand.Intn(2) == 0 {
		vs = append(vs, kv{"code", bpPanel.concept()})
		vs = append(vs, kv{"component", arr{
			obj{{"code", bpSystolic.code.concept()}, {"valueQuantity", g.quantity(bpSystolic)}},
			obj{{"code", bpDiastolic.code.concept()}, {"valueQuantity", g.quantity(bpDiastolic)}},
		}})
	} else {
		v := vitals[f.Rand.Intn(len(vitals))]
		vs = append(vs, kv{"code", v.code.concept()})
		vs = append(vs, kv{"valueQuantity", g.quantity(v)})
	}
	s.add("Observation", g.newID("ehr", "Observation"), vs)

	if f.Rand.Intn(5) < 2 {
		l := labs[f.Rand.Intn(len(labs))]
		s.add("Observation", g.newID("ehr", "Observation"), obj{
			{"status", "final"},
			{"category", arr{code{sysObsCategory, "laboratory", "Laboratory"}.concept()}},
			{"code", l.code.concept()},
			{"subject", subject},
			{"encounter", encRef},
			{"effectiveDateTime", fhirDateTime(start.Add(30 * time.Minute))},
			{"issued", fhirDateTime(start.Add(3 * time.Hour))},
			{"valueQuantity", g.quantity(l)},
		})
	}

	if len(condIDs) > 0 && f.Rand.Intn(5) < 3 {
		med := medications[condIdx[0]]
		s.add("MedicationRequest", g.newID("ehr", "MedicationRequest"), obj{
			{"status", "active"},
			{"intent", "order"},
			{"medicationCodeableConcept", med.concept()},
			{"subject", subject},
			{"encounter", encRef},
			{"authoredOn", fhirDateTime(start.Add(40 * time.Minute))},
			{"requester", ref("Practitioner", gpID)},
			{"reasonReference", arr{ref("Condition", condIDs[0])}},
			{"dosageInstruction", arr{obj{{"text", "Take as directed"}, {"sequence", 1}}}},
		})
	}

	if f.Rand.Intn(5) == 0 {
		a := allergies[f.Rand.Intn(len(allergies))]
		crit := "low"
		if f.Rand.Intn(4) == 0 {
			crit = "high"
		}
		s.add("AllergyIntolerance", g.newID("ehr", "AllergyIntolerance"), obj{
			{"clinicalStatus", code{sysAllergyClin, "active", "Active"}.concept()},
			{"verificationStatus", code{sysAllergyVer, "confirmed", "Confirmed"}.concept()},
			{"type", "allergy"},
			{"category", arr{a.category}},
			{"criticality", crit},
			{"code", a.code.concept()},
			{"patient", subject},
			{"recordedDate", fhirDateTime(start)},
		})
	}

	if f.Rand.Intn(20) < 9 {
		v := immunizations[f.Rand.Intn(len(immunizations))]
		s.add("Immunization", g.newID("ehr", "Immunization"), obj{
			{"status", "completed"},
			{"vaccineCode", v.concept()},
			{"patient", subject},
			{"encounter", encRef},
			{"occurrenceDateTime", fhirDateTime(start.Add(20 * time.Minute))},
			{"primarySource", true},
			{"lotNumber", "L" + strconv.Itoa(10000+f.Rand.Intn(90000))},
		})
	}
}

// ---- Other clinical data, by kind ----

func (g *generator) otherClinical(patID string, birth time.Time) {
	switch g.cfg.Other.Kind {
	case KindImaging:
		for range 1 + g.f.Rand.Intn(2) {
			g.imagingStudy(patID, birth)
		}
	case KindLab:
		g.labReport(patID, birth)
	case KindRegionalRecord:
		for range 1 + g.f.Rand.Intn(2) {
			g.regionalEncounter(patID, birth)
		}
	}
}

func (g *generator) dicomUID() string {
	return "2.25." + strconv.FormatUint(1+g.f.Rand.Uint64()>>1, 10) + strconv.FormatUint(g.f.Rand.Uint64()%1_000_000_000_000, 10)
}

func (g *generator) imagingStudy(patID string, birth time.Time) {
	f := g.f
	s := g.other
	proc := imagingProcedures[f.Rand.Intn(len(imagingProcedures))]
	started := g.pastTime(5*365, birth)
	studyUID := g.dicomUID()
	modality := code{sysDCM, proc.modality, proc.modDisplay}
	nSeries := 1 + f.Rand.Intn(3)
	series := make(arr, 0, nSeries)
	total := 0
	for si := range nSeries {
		seriesUID := studyUID + "." + strconv.Itoa(si+1)
		nInst := 1 + f.Rand.Intn(4)
		inst := make(arr, nInst)
		for k := range nInst {
			inst[k] = obj{
				{"uid", seriesUID + "." + strconv.Itoa(k+1)},
				{"sopClass", obj{{"system", sysRFC3986}, {"code", sopClassFor[proc.modality]}}},
				{"number", k + 1},
			}
		}
		total += nInst
		series = append(series, obj{
			{"uid", seriesUID}, {"number", si + 1}, {"modality", modality.coding()},
			{"description", proc.description}, {"numberOfInstances", nInst},
			{"bodySite", proc.bodySite.coding()}, {"instance", inst},
			{"started", fhirDateTime(started.Add(time.Duration(si) * 5 * time.Minute))},
		})
	}
	reader := g.otherStaff[f.Rand.Intn(len(g.otherStaff))]
	studyID := g.newID("other", "ImagingStudy")
	s.add("ImagingStudy", studyID, obj{
		{"identifier", arr{obj{{"system", sysDICOMUID}, {"value", "urn:oid:" + studyUID}}}},
		{"status", "available"},
		{"modality", arr{modality.coding()}},
		{"subject", ref("Patient", patID)},
		{"started", fhirDateTime(started)},
		{"interpreter", arr{ref("Practitioner", reader)}},
		{"endpoint", arr{ref("Endpoint", g.dicomEndpoint)}},
		{"numberOfSeries", nSeries},
		{"numberOfInstances", total},
		{"procedureCode", arr{proc.report.concept()}},
		{"description", proc.description},
		{"series", series},
	})
	s.add("DiagnosticReport", g.newID("other", "DiagnosticReport"), obj{
		{"status", "final"},
		{"category", arr{code{sysV2DiagSvc, "RAD", "Radiology"}.concept()}},
		{"code", proc.report.concept()},
		{"subject", ref("Patient", patID)},
		{"effectiveDateTime", fhirDateTime(started)},
		{"issued", fhirDateTime(started.Add(time.Duration(2+f.Rand.Intn(46)) * time.Hour))},
		{"performer", arr{ref("Organization", g.otherOrg)}},
		{"resultsInterpreter", arr{ref("Practitioner", reader)}},
		{"imagingStudy", arr{ref("ImagingStudy", studyID)}},
		{"conclusion", proc.findings[f.Rand.Intn(len(proc.findings))]},
	})
}

func (g *generator) labReport(patID string, birth time.Time) {
	f := g.f
	s := g.other
	panel := labPanels[f.Rand.Intn(len(labPanels))]
	collected := g.pastTime(3*365, birth)
	issued := collected.Add(time.Duration(2+f.Rand.Intn(22)) * time.Hour)
	subject := ref("Patient", patID)
	results := make(arr, 0, len(panel.results))
	for _, li := range panel.results {
		l := labs[li]
		id := g.newID("other", "Observation")
		s.add("Observation", id, obj{
			{"status", "final"},
			{"category", arr{code{sysObsCategory, "laboratory", "Laboratory"}.concept()}},
			{"code", l.code.concept()},
			{"subject", subject},
			{"effectiveDateTime", fhirDateTime(collected)},
			{"issued", fhirDateTime(issued)},
			{"performer", arr{ref("Organization", g.otherOrg)}},
			{"valueQuantity", g.quantity(l)},
		})
		results = append(results, ref("Observation", id))
	}
	s.add("DiagnosticReport", g.newID("other", "DiagnosticReport"), obj{
		{"status", "final"},
		{"category", arr{code{sysV2DiagSvc, "LAB", "Laboratory"}.concept()}},
		{"code", panel.code.concept()},
		{"subject", subject},
		{"effectiveDateTime", fhirDateTime(collected)},
		{"issued", fhirDateTime(issued)},
		{"performer", arr{ref("Organization", g.otherOrg)}},
		{"result", results},
	})
}

func (g *generator) regionalEncounter(patID string, birth time.Time) {
	f := g.f
	s := g.other
	subject := ref("Patient", patID)
	encID, start := g.encounter(s, "other", 5*365, subject, birth, g.otherOrg)
	if f.Rand.Intn(3) < 2 {
		ci := f.Rand.Intn(len(conditions))
		s.add("Condition", g.newID("other", "Condition"), obj{
			{"clinicalStatus", code{sysCondClinical, "active", "Active"}.concept()},
			{"verificationStatus", code{sysCondVer, "confirmed", "Confirmed"}.concept()},
			{"category", arr{code{sysCondCategory, "encounter-diagnosis", "Encounter Diagnosis"}.concept()}},
			{"code", conditions[ci].concept()},
			{"subject", subject},
			{"encounter", ref("Encounter", encID)},
			{"recordedDate", fhirDateTime(start)},
		})
	}
}

// encounter adds a finished Encounter of a random type within the last
// days (not before birth) at side's organisation org, with extra members,
// and returns its id and start. The draws are in a fixed order, so the
// same seed gives the same bytes.
func (g *generator) encounter(s *sink, side string, days int, subject obj, birth time.Time, org string, extra ...kv) (string, time.Time) {
	f := g.f
	et := encounterTypes[f.Rand.Intn(len(encounterTypes))]
	start := g.pastTime(days, birth)
	end := start.Add(time.Duration(20+f.Rand.Intn(70)) * time.Minute)
	if et.class.code == "IMP" {
		end = start.Add(time.Duration(1+f.Rand.Intn(6)) * 24 * time.Hour)
	}
	id := g.newID(side, "Encounter")
	body := obj{
		{"status", "finished"},
		{"class", et.class.coding()},
		{"type", arr{et.typ.concept()}},
		{"subject", subject},
		{"period", obj{{"start", fhirDateTime(start)}, {"end", fhirDateTime(end)}}},
		{"serviceProvider", ref("Organization", org)},
	}
	s.add("Encounter", id, append(body, extra...))
	return id, start
}
