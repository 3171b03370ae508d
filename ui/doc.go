// Package ui embeds the HTML templates and static assets of sim's
// authorization servers (login, patient picker, consent, error) and parses
// them once. It has no handlers: ehr and otheras render the pages.
package ui
