package authkit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/smart-sim/sim/internal/scope"
)

// Codes issues authorization codes and redeems each once (RFC 6749
// §4.1.2). Only a code's hash is stored; a used code is remembered by a
// mark (see Marks) for its lifetime from its use. Build it with NewCodes.
type Codes struct {
	store Store
	life  time.Duration // how long a code may be redeemed
	now   func() time.Time
	key   []byte // names what a code's use issues (CodeUse)
	used  *Marks
}

// NewCodes keeps codes in store, redeemable for life, on the clock now.
func NewCodes(store Store, life time.Duration, now func() time.Time) *Codes {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return &Codes{store: store, life: life, now: now, key: key, used: NewMarks(now)}
}

const codeBucket = "code"

// ErrCodeUsed is what Redeem answers for an unknown, expired or replayed
// code.
var ErrCodeUsed = ErrInvalidGrant.With("code is invalid, expired or already used")

// CodeUse names what the one use of a code issues: the refresh family,
// the access token's id and the launch-token's id. They are derived from
// the code under a key only this Codes holds (HMAC-SHA-512), so a replay
// of the code names the same ones and can revoke them, without the first
// use storing anything but a mark; and nobody who saw the code, in a
// redirect or a log, can tell them. They are as long as RandomString(16)'s.
type CodeUse struct {
	Family, JTI, LaunchJTI string
}

// Marks are the marks of the codes used within their lifetime (for tests
// and monitoring).
func (c *Codes) Marks() *Marks { return c.used }

// use derives the CodeUse of code.
func (c *Codes) use(code string) CodeUse {
	m := hmac.New(sha512.New, c.key)
	m.Write([]byte(code))
	sum := m.Sum(nil)
	id := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	return CodeUse{Family: id(sum[0:16]), JTI: id(sum[16:32]), LaunchJTI: id(sum[32:48])}
}

// Issue stores rec (marshalled to JSON) under a new code.
func (c *Codes) Issue(ctx context.Context, rec any) (string, error) {
	code := RandomString(32)
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("encode code: %w", err)
	}
	if err := c.store.Put(ctx, codeBucket, Hash(code), b, c.now().Add(c.life)); err != nil {
		return "", fmt.Errorf("store code: %w", err)
	}
	return code, nil
}

// Redeem takes code once, decodes what it stands for into rec and
// answers what this use may issue. The code is marked used before it is
// taken, so that a replay, even one racing this use, finds the mark:
// Redeem then calls onReplay with what the first use issued (to revoke
// it) and answers ErrCodeUsed. The mark is kept for the code's lifetime
// from this use, so it outlives the code (issued before now): a replay
// after that is refused as an unknown code, without revocation.
func (c *Codes) Redeem(ctx context.Context, code string, rec any, onReplay func(first CodeUse)) (CodeUse, error) {
	if err := c.used.Use(code, c.now().Add(c.life)); err != nil {
		if onReplay != nil {
			onReplay(c.use(code))
		}
		return CodeUse{}, ErrCodeUsed
	}
	b, err := c.store.Take(ctx, codeBucket, Hash(code))
	if err != nil {
		// Unknown or expired: nothing was issued, forget the mark.
		c.used.Forget(code)
		return CodeUse{}, ErrCodeUsed
	}
	if err := json.Unmarshal(b, rec); err != nil {
		return CodeUse{}, fmt.Errorf("decode code: %w", err)
	}
	return c.use(code), nil
}

// Revocations are the revoked access-token ids and refresh families of a
// server: in memory for the hot verification path, persisted in Store so
// that they survive a restart.
type Revocations struct {
	Store     Store
	FamilyTTL time.Duration // how long a revoked family is remembered
	Now       func() time.Time
	Logger    *slog.Logger // nil: discard

	mu       sync.RWMutex
	jti, fam map[string]time.Time
}

const (
	revokedJTIBucket = "revoked_jti"
	revokedFamBucket = "revoked_family"
)

// Load reads the persisted revocations; call it once before use.
func (v *Revocations) Load(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.jti, v.fam = map[string]time.Time{}, map[string]time.Time{}
	for bucket, m := range map[string]map[string]time.Time{revokedJTIBucket: v.jti, revokedFamBucket: v.fam} {
		items, err := v.Store.List(ctx, bucket)
		if err != nil {
			return fmt.Errorf("load revocations: %w", err)
		}
		for _, it := range items {
			m[it.Key] = it.Expires
		}
	}
	return nil
}

func (v *Revocations) logError(ctx context.Context, msg string, err error) {
	if v.Logger != nil {
		v.Logger.ErrorContext(ctx, msg, "err", err)
	}
}

// RevokeFamily revokes every token of a refresh family ("" is none).
func (v *Revocations) RevokeFamily(ctx context.Context, fam string) {
	if fam == "" {
		return
	}
	exp := v.Now().Add(v.FamilyTTL)
	v.mu.Lock()
	v.fam[fam] = exp
	v.mu.Unlock()
	if err := v.Store.Put(ctx, revokedFamBucket, fam, []byte{1}, exp); err != nil {
		v.logError(ctx, "persist family revocation", err)
	}
}

// RevokeJTI revokes one token until exp (when it expires anyway).
func (v *Revocations) RevokeJTI(ctx context.Context, jti string, exp time.Time) {
	if jti == "" {
		return
	}
	v.mu.Lock()
	v.jti[jti] = exp
	v.mu.Unlock()
	if err := v.Store.Put(ctx, revokedJTIBucket, jti, []byte{1}, exp); err != nil {
		v.logError(ctx, "persist revocation", err)
	}
}

// FamilyRevoked reports a revoked refresh family.
func (v *Revocations) FamilyRevoked(fam string) bool {
	if fam == "" {
		return false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.fam[fam]
	return ok
}

// Revoked reports a token revoked by its id or its family.
func (v *Revocations) Revoked(jti, fam string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if _, ok := v.jti[jti]; ok {
		return true
	}
	_, ok := v.fam[fam]
	return fam != "" && ok
}

// RefreshFamilies stores refresh tokens (by hash) with rotation (RFC 6749
// §6, RFC 9700 §4.14.2): a token is used once and its successor belongs
// to the same family; a second use of a rotated token revokes the family.
// A record is any JSON object with the fields of RefreshHeader at its top
// level.
type RefreshFamilies struct {
	Store       Store
	Revocations *Revocations
	Life        time.Duration
	Now         func() time.Time
}

// RefreshHeader are the fields of a refresh record RefreshFamilies reads.
type RefreshHeader struct {
	ClientID string `json:"client_id"`
	Username string `json:"username,omitempty"`
	Scopes   string `json:"scopes"`
	Family   string `json:"family,omitempty"`
	Used     bool   `json:"used,omitempty"`
}

const refreshBucket = "refresh"

// Issue stores rec under a new refresh token.
func (f *RefreshFamilies) Issue(ctx context.Context, rec any) (string, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("encode refresh token: %w", err)
	}
	rt := RandomString(32)
	if err := f.Store.Put(ctx, refreshBucket, Hash(rt), b, f.Now().Add(f.Life)); err != nil {
		return "", fmt.Errorf("store refresh token: %w", err)
	}
	return rt, nil
}

// Refresh is a refresh token being redeemed.
type Refresh struct {
	RefreshHeader
	Record []byte // the stored record, for the caller to decode
	f      *RefreshFamilies
	key    string
}

// Redeem looks tok up for clientID: an unknown, expired or revoked
// token, another client's, or one used before (which revokes its
// family) is invalid_grant. Nothing changes until Rotate.
func (f *RefreshFamilies) Redeem(ctx context.Context, tok, clientID string) (*Refresh, error) {
	key := Hash(tok)
	b, err := f.Store.Get(ctx, refreshBucket, key)
	if err != nil {
		return nil, ErrInvalidGrant.With("refresh token is invalid or expired")
	}
	r := &Refresh{Record: b, f: f, key: key}
	if err := json.Unmarshal(b, &r.RefreshHeader); err != nil {
		return nil, fmt.Errorf("decode refresh token: %w", err)
	}
	if r.ClientID != clientID {
		return nil, ErrInvalidGrant.With("refresh token was issued to another client")
	}
	if f.Revocations.FamilyRevoked(r.Family) {
		return nil, ErrInvalidGrant.With("refresh token was revoked")
	}
	if r.Used {
		// Reuse of a rotated token: someone else has it.
		f.Revocations.RevokeFamily(ctx, r.Family)
		return nil, ErrInvalidGrant.With("refresh token was already used")
	}
	return r, nil
}

// Rotate marks the token used (compare-and-swap): when another request
// used it first, the family is revoked.
func (r *Refresh) Rotate(ctx context.Context) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.Record, &m); err != nil {
		return fmt.Errorf("decode refresh token: %w", err)
	}
	m["used"] = json.RawMessage("true")
	nb, _ := json.Marshal(m)
	if err := r.f.Store.Swap(ctx, refreshBucket, r.key, r.Record, nb, r.f.Now().Add(r.f.Life)); err != nil {
		if errors.Is(err, ErrConflict) {
			r.f.Revocations.RevokeFamily(ctx, r.Family)
			return ErrInvalidGrant.With("refresh token was already used")
		}
		return ErrInvalidGrant.With("refresh token is invalid or expired")
	}
	return nil
}

// Active returns the header of a live refresh token of clientID.
func (f *RefreshFamilies) Active(ctx context.Context, tok, clientID string) (RefreshHeader, bool) {
	var h RefreshHeader
	b, err := f.Store.Get(ctx, refreshBucket, Hash(tok))
	if err != nil || json.Unmarshal(b, &h) != nil || h.Used || f.Revocations.FamilyRevoked(h.Family) || h.ClientID != clientID {
		return RefreshHeader{}, false
	}
	return h, true
}

// Introspect is RFC 7662's answer about a refresh token: active only for
// its own client.
func (f *RefreshFamilies) Introspect(ctx context.Context, tok, clientID, issuer string) map[string]any {
	h, ok := f.Active(ctx, tok, clientID)
	if !ok {
		return map[string]any{"active": false}
	}
	out := map[string]any{"active": true, "token_type": "refresh_token", "client_id": h.ClientID, "scope": h.Scopes, "iss": issuer}
	if h.Username != "" {
		out["sub"] = h.Username
	}
	return out
}

// Revoke is RFC 7009 for a refresh token of clientID: its family is
// revoked and the token forgotten. Another client's token is left alone.
func (f *RefreshFamilies) Revoke(ctx context.Context, tok, clientID string) {
	b, err := f.Store.Get(ctx, refreshBucket, Hash(tok))
	if err != nil {
		return
	}
	var h RefreshHeader
	if json.Unmarshal(b, &h) == nil && h.ClientID == clientID {
		f.Revocations.RevokeFamily(ctx, h.Family)
		_ = f.Store.Delete(ctx, refreshBucket, Hash(tok))
	}
}

// DownScope is the scope of a refreshed access token: the grant's, or
// the asked subset of it (RFC 6749 §6); more than the grant is
// invalid_scope.
func DownScope(grant, asked string) (scope.Set, error) {
	granted, _ := scope.Parse(grant)
	if asked == "" {
		return granted, nil
	}
	set, err := scope.Parse(asked)
	if err != nil {
		return nil, ErrInvalidScope.With("scope is malformed")
	}
	if !set.Subset(granted) {
		return nil, ErrInvalidScope.With("scope exceeds the original grant")
	}
	return set, nil
}

// Grant is the refresh_token grant (RFC 6749 §6) with rotation for
// client c: it redeems form's refresh_token, decodes the stored record
// into rec, rotates the token and returns the scopes to issue (the
// grant's, or the asked subset of them).
func (f *RefreshFamilies) Grant(ctx context.Context, c *Client, form url.Values, rec any) (scope.Set, error) {
	if !c.HasGrant(GrantRefreshToken) {
		return nil, ErrUnauthorizedClient.With("client is not registered for refresh_token")
	}
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, ErrInvalidRequest.With("refresh_token is required")
	}
	rt, err := f.Redeem(ctx, tok, c.ID)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(rt.Record, rec); err != nil {
		return nil, fmt.Errorf("decode refresh token: %w", err)
	}
	set, err := DownScope(rt.Scopes, form.Get("scope"))
	if err != nil {
		return nil, err
	}
	if err := rt.Rotate(ctx); err != nil {
		return nil, err
	}
	return set, nil
}

// ServeRevoke is RFC 7009 for access and refresh tokens of the
// authenticated client: access reads an access token of this server (an
// error: it is none, so tok is tried as a refresh token, whose whole
// family is revoked). Another client's token: 200, nothing revoked.
func (f *RefreshFamilies) ServeRevoke(w http.ResponseWriter, r *http.Request, auth *ClientAuthenticator, access func(ctx context.Context, tok string) (*Access, error)) {
	ctx := r.Context()
	who, form, ok := ReadClientRequest(w, r, auth, false)
	if !ok {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		WriteError(w, ErrInvalidRequest.With("token is required"), false)
		return
	}
	if a, err := access(ctx, tok); err == nil {
		if a.ClientID == who.Client.ID {
			f.Revocations.RevokeJTI(ctx, a.TokenID, a.Expires)
		}
	} else {
		f.Revoke(ctx, tok, who.Client.ID)
	}
	NoStore(w)
	w.WriteHeader(http.StatusOK)
}
