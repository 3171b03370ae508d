package fhirstore

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Sentinel errors of the Store. Match them with errors.Is.
var (
	ErrNotFound = errors.New("resource not found")
	ErrGone     = errors.New("resource deleted")
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// OutcomeError is a client-facing failure: an HTTP status and the issues of
// the OperationOutcome that explains it. Its messages never carry internal
// error text.
type OutcomeError struct {
	Status int
	Issues []Issue
}

func (e *OutcomeError) Error() string {
	if len(e.Issues) == 0 {
		return http.StatusText(e.Status)
	}
	return http.StatusText(e.Status) + ": " + e.Issues[0].Diagnostics
}

func newOutcomeError(status int, code, msg string, expr ...string) *OutcomeError {
	return &OutcomeError{Status: status, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: msg, Expression: expr}}}
}

func badRequest(code, msg string, expr ...string) *OutcomeError {
	return newOutcomeError(http.StatusBadRequest, code, msg, expr...)
}

// operationOutcome is the JSON shape of an R4 OperationOutcome.
type operationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

func outcomeJSON(issues []Issue) []byte {
	if len(issues) == 0 {
		issues = []Issue{{Severity: "information", Code: "informational"}}
	}
	b, err := json.Marshal(operationOutcome{ResourceType: "OperationOutcome", Issue: issues})
	if err != nil {
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception"}]}`)
	}
	return b
}

// asOutcome maps any error to an OutcomeError; unknown errors become a 500
// with a fixed message (the caller logs the real one).
func asOutcome(err error) (*OutcomeError, bool) {
	var oe *OutcomeError
	switch {
	case errors.As(err, &oe):
		return oe, true
	case errors.Is(err, ErrNotFound):
		return newOutcomeError(http.StatusNotFound, "not-found", "resource not found"), true
	case errors.Is(err, ErrGone):
		return newOutcomeError(http.StatusGone, "deleted", "resource has been deleted"), true
	}
	return newOutcomeError(http.StatusInternalServerError, "exception", "internal server error"), false
}
