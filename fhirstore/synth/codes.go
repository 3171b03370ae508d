package synth

import (
	"slices"
	"sync/atomic"
)

// Code systems used in generated resources.
const (
	sysSNOMED       = "http://snomed.info/sct"
	sysLOINC        = "http://loinc.org"
	sysUCUM         = "http://unitsofmeasure.org"
	sysRxNorm       = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysCVX          = "http://hl7.org/fhir/sid/cvx"
	sysNPI          = "http://hl7.org/fhir/sid/us-npi"
	sysDCM          = "http://dicom.nema.org/resources/ontology/DCM"
	sysV2IDType     = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysV2DiagSvc    = "http://terminology.hl7.org/CodeSystem/v2-0074"
	sysActCode      = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysObsCategory  = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysCondClinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVer      = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	sysCondCategory = "http://terminology.hl7.org/CodeSystem/condition-category"
	sysAllergyClin  = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	sysAllergyVer   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	sysOrgType      = "http://terminology.hl7.org/CodeSystem/organization-type"
	sysEndpointConn = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
	sysEndpointLoad = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
	sysDICOMUID     = "urn:dicom:uid"
	sysRFC3986      = "urn:ietf:rfc:3986"
	sysMarital      = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
)

type code struct{ system, code, display string }

// Codings and concepts of the codes below are built once (members already
// in key order, so the encoder only reads them) and shared by every
// resource: they are most of what a resource is made of.
var (
	codingCache  = map[code]obj{}
	conceptCache = map[code]obj{}
	cacheMisses  atomic.Int64 // tests check it stays zero
)

func buildCoding(c code) obj {
	return obj{{"code", c.code}, {"display", c.display}, {"system", c.system}}
}

func buildConcept(c code) obj {
	return obj{{"coding", arr{buildCoding(c)}}, {"text", c.display}}
}

func (c code) coding() obj {
	if o, ok := codingCache[c]; ok {
		return o
	}
	cacheMisses.Add(1)
	return buildCoding(c)
}

func (c code) concept() obj {
	if o, ok := conceptCache[c]; ok {
		return o
	}
	cacheMisses.Add(1)
	return buildConcept(c)
}

// fixedCodes are the codes written inline where resources are built.
var fixedCodes = []code{
	{sysAllergyClin, "active", "Active"},
	{sysAllergyVer, "confirmed", "Confirmed"},
	{sysCondCategory, "encounter-diagnosis", "Encounter Diagnosis"},
	{sysCondClinical, "active", "Active"},
	{sysCondVer, "confirmed", "Confirmed"},
	{sysEndpointConn, "dicom-wado-rs", "DICOM WADO-RS"},
	{sysEndpointConn, "hl7-fhir-rest", "HL7 FHIR"},
	{sysEndpointLoad, "any", "Any"},
	{sysObsCategory, "laboratory", "Laboratory"},
	{sysObsCategory, "vital-signs", "Vital Signs"},
	{sysOrgType, "prov", "Healthcare Provider"},
	{sysOrgType, "other", "Other"},
	{sysV2DiagSvc, "LAB", "Laboratory"},
	{sysV2DiagSvc, "RAD", "Radiology"},
	{sysV2IDType, "MR", "Medical record number"},
	{sysV2IDType, "NI", "National unique individual identifier"},
	{sysMarital, "S", "Never Married"},
	{sysMarital, "M", "Married"},
}

func init() {
	all := slices.Concat(fixedCodes, conditions, medications, immunizations)
	for _, e := range encounterTypes {
		all = append(all, e.class, e.typ)
	}
	for _, q := range slices.Concat(vitals, labs, []quantityKind{bpSystolic, bpDiastolic}) {
		all = append(all, q.code)
	}
	all = append(all, bpPanel)
	for _, p := range labPanels {
		all = append(all, p.code)
	}
	for _, a := range allergies {
		all = append(all, a.code)
	}
	for _, p := range imagingProcedures {
		all = append(all, p.report, p.bodySite, code{sysDCM, p.modality, p.modDisplay})
	}
	for _, c := range all {
		codingCache[c] = buildCoding(c)
		conceptCache[c] = buildConcept(c)
	}
}

var conditions = []code{
	{sysSNOMED, "44054006", "Diabetes mellitus type 2"},
	{sysSNOMED, "38341003", "Hypertensive disorder"},
	{sysSNOMED, "195967001", "Asthma"},
	{sysSNOMED, "13645005", "Chronic obstructive lung disease"},
	{sysSNOMED, "55822004", "Hyperlipidemia"},
	{sysSNOMED, "35489007", "Depressive disorder"},
	{sysSNOMED, "49436004", "Atrial fibrillation"},
	{sysSNOMED, "69896004", "Rheumatoid arthritis"},
	{sysSNOMED, "235595009", "Gastroesophageal reflux disease"},
	{sysSNOMED, "37796009", "Migraine"},
	{sysSNOMED, "40055000", "Chronic sinusitis"},
	{sysSNOMED, "396275006", "Osteoarthritis"},
}

// medications pairs with conditions by index where a first-line drug exists.
var medications = []code{
	{sysRxNorm, "860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"},
	{sysRxNorm, "314076", "lisinopril 10 MG Oral Tablet"},
	{sysRxNorm, "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"},
	{sysRxNorm, "896209", "60 ACTUAT fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler"},
	{sysRxNorm, "259255", "atorvastatin 80 MG Oral Tablet"},
	{sysRxNorm, "312938", "sertraline 100 MG Oral Tablet"},
	{sysRxNorm, "855332", "warfarin sodium 5 MG Oral Tablet"},
	{sysRxNorm, "105585", "methotrexate 2.5 MG Oral Tablet"},
	{sysRxNorm, "198053", "omeprazole 20 MG Delayed Release Oral Capsule"},
	{sysRxNorm, "310965", "ibuprofen 200 MG Oral Tablet"},
	{sysRxNorm, "308182", "amoxicillin 250 MG Oral Capsule"},
	{sysRxNorm, "313782", "acetaminophen 325 MG Oral Tablet"},
}

var encounterTypes = []struct {
	class code
	typ   code
}{
	{code{sysActCode, "AMB", "ambulatory"}, code{sysSNOMED, "185349003", "Encounter for check up"}},
	{code{sysActCode, "AMB", "ambulatory"}, code{sysSNOMED, "390906007", "Follow-up encounter"}},
	{code{sysActCode, "EMER", "emergency"}, code{sysSNOMED, "50849002", "Emergency room admission"}},
	{code{sysActCode, "IMP", "inpatient encounter"}, code{sysSNOMED, "32485007", "Hospital admission"}},
}

type quantityKind struct {
	code       code
	unit, ucum string
	min, max   float64
	decimals   int
}

var vitals = []quantityKind{
	{code{sysLOINC, "8867-4", "Heart rate"}, "/min", "/min", 52, 110, 0},
	{code{sysLOINC, "29463-7", "Body weight"}, "kg", "kg", 45, 130, 1},
	{code{sysLOINC, "8302-2", "Body height"}, "cm", "cm", 150, 200, 1},
	{code{sysLOINC, "8310-5", "Body temperature"}, "Cel", "Cel", 36.1, 38.4, 1},
	{code{sysLOINC, "9279-1", "Respiratory rate"}, "/min", "/min", 11, 24, 0},
	{code{sysLOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"}, "%", "%", 91, 100, 0},
}

var (
	bpPanel     = code{sysLOINC, "85354-9", "Blood pressure panel with all children optional"}
	bpSystolic  = quantityKind{code{sysLOINC, "8480-6", "Systolic blood pressure"}, "mm[Hg]", "mm[Hg]", 100, 165, 0}
	bpDiastolic = quantityKind{code{sysLOINC, "8462-4", "Diastolic blood pressure"}, "mm[Hg]", "mm[Hg]", 60, 100, 0}
)

var labs = []quantityKind{
	{code{sysLOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"}, "mg/dL", "mg/dL", 70, 180, 0},
	{code{sysLOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"}, "g/dL", "g/dL", 11, 17.5, 1},
	{code{sysLOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma"}, "mg/dL", "mg/dL", 0.5, 1.6, 2},
	{code{sysLOINC, "2823-3", "Potassium [Moles/volume] in Serum or Plasma"}, "mmol/L", "mmol/L", 3.4, 5.3, 1},
	{code{sysLOINC, "2951-2", "Sodium [Moles/volume] in Serum or Plasma"}, "mmol/L", "mmol/L", 134, 146, 0},
	{code{sysLOINC, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"}, "mg/dL", "mg/dL", 140, 280, 0},
	{code{sysLOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"}, "%", "%", 4.8, 9.5, 1},
	{code{sysLOINC, "6690-2", "Leukocytes [#/volume] in Blood by Automated count"}, "10*3/uL", "10*3/uL", 3.5, 12, 1},
}

var labPanels = []struct {
	code    code
	results []int // indexes into labs
}{
	{code{sysLOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"}, []int{0, 2, 3, 4}},
	{code{sysLOINC, "58410-2", "CBC panel - Blood by Automated count"}, []int{1, 7}},
	{code{sysLOINC, "57698-3", "Lipid panel with direct LDL - Serum or Plasma"}, []int{5}},
	{code{sysLOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"}, []int{6, 0}},
}

var immunizations = []code{
	{sysCVX, "140", "Influenza, seasonal, injectable, preservative free"},
	{sysCVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"},
	{sysCVX, "115", "Tdap"},
	{sysCVX, "133", "Pneumococcal conjugate PCV 13"},
	{sysCVX, "43", "Hep B, adult"},
	{sysCVX, "187", "zoster vaccine recombinant"},
}

var allergies = []struct {
	category string
	code     code
}{
	{"medication", code{sysSNOMED, "91936005", "Allergy to penicillin"}},
	{"food", code{sysSNOMED, "91935009", "Allergy to peanuts"}},
	{"food", code{sysSNOMED, "300913006", "Shellfish allergy"}},
	{"environment", code{sysSNOMED, "418689008", "Allergy to grass pollen"}},
	{"environment", code{sysSNOMED, "232350006", "House dust mite allergy"}},
	{"medication", code{sysSNOMED, "294505008", "Allergy to amoxicillin"}},
}

var imagingProcedures = []struct {
	modality    string
	modDisplay  string
	report      code
	bodySite    code
	description string
	findings    []string
}{
	{"CT", "Computed Tomography", code{sysLOINC, "24627-2", "CT Chest"}, code{sysSNOMED, "51185008", "Thoracic structure"}, "CT chest without contrast",
		[]string{"No acute cardiopulmonary abnormality.", "Small nodule in the right upper lobe; follow-up CT in 12 months.", "Mild emphysematous changes."}},
	{"CR", "Computed Radiography", code{sysLOINC, "36643-5", "XR Chest 2 Views"}, code{sysSNOMED, "51185008", "Thoracic structure"}, "Chest X-ray PA and lateral",
		[]string{"Lungs are clear. Heart size normal.", "Mild cardiomegaly without pulmonary edema."}},
	{"MR", "Magnetic Resonance", code{sysLOINC, "24590-2", "MR Brain"}, code{sysSNOMED, "12738006", "Brain structure"}, "MRI brain with and without contrast",
		[]string{"No intracranial abnormality.", "Scattered white matter hyperintensities, likely chronic small vessel disease."}},
	{"US", "Ultrasound", code{sysLOINC, "24531-6", "US Abdomen"}, code{sysSNOMED, "818983003", "Abdomen"}, "Ultrasound abdomen complete",
		[]string{"Normal abdominal ultrasound.", "Cholelithiasis without cholecystitis.", "Mild hepatic steatosis."}},
	{"DX", "Digital Radiography", code{sysLOINC, "37637-6", "XR Knee"}, code{sysSNOMED, "72696002", "Knee region structure"}, "Knee X-ray 3 views",
		[]string{"Mild degenerative joint disease.", "No fracture or dislocation."}},
}

// sopClassFor maps a modality to its DICOM storage SOP class.
var sopClassFor = map[string]string{
	"CT": "urn:oid:1.2.840.10008.5.1.4.1.1.2",
	"CR": "urn:oid:1.2.840.10008.5.1.4.1.1.1",
	"MR": "urn:oid:1.2.840.10008.5.1.4.1.1.4",
	"US": "urn:oid:1.2.840.10008.5.1.4.1.1.6.1",
	"DX": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1",
}

// marriedNames are family names a drifted record may carry instead.
var marriedNames = []string{"Anderson", "Bakker", "Carter", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Olsen", "Peters", "Rossi"}
