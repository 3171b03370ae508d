package ehr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/smart-sim/sim/internal/authkit"
)

// LaunchRequest asks for an EHR launch (SMART App Launch "EHR launch").
type LaunchRequest struct {
	ClientID  string
	LaunchURL string // "" = the client's registered launch_uri
	Patient   string // EHR patient id
	User      string // username; treated as the signed-in EHR user
	Encounter string // optional encounter id of that patient
}

// Launch errors, for the control API to map to 4xx.
var (
	ErrUnknownClient    = errors.New("unknown client")
	ErrUnknownUser      = errors.New("unknown user")
	ErrUnknownPatient   = errors.New("unknown patient")
	ErrUnknownEncounter = errors.New("unknown encounter for this patient")
	ErrNoLaunchURL      = errors.New("no launch URL: give one or register launch_uri")
)

// NewLaunch creates a single-use launch context (Lifetimes.Launch) and
// returns the app's launch URL with iss and launch.
func (s *Server) NewLaunch(ctx context.Context, lr LaunchRequest) (string, error) {
	c, ok := s.clients.Get(lr.ClientID)
	if !ok {
		return "", fmt.Errorf("new launch: %w: %q", ErrUnknownClient, lr.ClientID)
	}
	target := lr.LaunchURL
	if target == "" {
		target = c.LaunchURI
	}
	if target == "" {
		return "", fmt.Errorf("new launch: %w", ErrNoLaunchURL)
	}
	u, err := url.Parse(target)
	if err != nil || !u.IsAbs() {
		return "", fmt.Errorf("new launch: launch URL must be absolute")
	}
	if _, err := s.cfg.Users.Lookup(ctx, lr.User); err != nil {
		return "", fmt.Errorf("new launch: %w: %q", ErrUnknownUser, lr.User)
	}
	if _, err := s.cfg.Patients.Patient(ctx, lr.Patient); err != nil {
		return "", fmt.Errorf("new launch: %w: %q", ErrUnknownPatient, lr.Patient)
	}
	if lr.Encounter != "" {
		encs, err := s.cfg.Patients.Encounters(ctx, lr.Patient)
		if err != nil || !slices.ContainsFunc(encs, func(e Encounter) bool { return e.ID == lr.Encounter }) {
			return "", fmt.Errorf("new launch: %w: %q", ErrUnknownEncounter, lr.Encounter)
		}
	}
	id := authkit.RandomString(24)
	b, _ := json.Marshal(launchContext{ClientID: c.ID, Patient: lr.Patient, User: lr.User, Encounter: lr.Encounter})
	if err := s.ephemeral.Put(ctx, bucketLaunch, authkit.Hash(id), b, s.cfg.Now().Add(s.cfg.Lifetimes.Launch)); err != nil {
		return "", fmt.Errorf("new launch: %w", err)
	}
	q := u.Query()
	q.Set("iss", s.cfg.FHIRBase)
	q.Set("launch", id)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
