package authkit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smart-sim/sim/internal/rsasign"
)

const keyBucket = "signing_keys"

// storedKey is a signing key at rest. Retire is zero for the active key;
// a demoted key is kept (and published) until Retire.
type storedKey struct {
	JWK     json.RawMessage `json:"jwk"`
	Created time.Time       `json:"created"`
	Retire  time.Time       `json:"retire,omitzero"`
}

type signingKey struct {
	kid     string
	priv    *rsa.PrivateKey
	created time.Time
	retire  time.Time
	fast    *rsasign.Key // RS256 signatures, on OpenSSL where available
	signers sync.Map     // typ -> jose.Signer
}

// opaque adapts the key to go-jose: it signs through rsasign.
type opaque struct{ k *signingKey }

func (o opaque) Public() *jose.JSONWebKey {
	return &jose.JSONWebKey{Key: o.k.fast.Public(), KeyID: o.k.kid, Algorithm: string(jose.RS256), Use: "sig"}
}

func (o opaque) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{jose.RS256} }

func (o opaque) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != jose.RS256 {
		return nil, fmt.Errorf("sign: algorithm %s not supported", alg)
	}
	return o.k.fast.SignSHA256(payload)
}

// signerFor returns a cached signer that writes typ into the header.
func (k *signingKey) signerFor(typ string) (jose.Signer, error) {
	if v, ok := k.signers.Load(typ); ok {
		return v.(jose.Signer), nil
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: opaque{k}}, opts)
	if err != nil {
		return nil, fmt.Errorf("make signer: %w", err)
	}
	k.signers.Store(typ, sig)
	return sig, nil
}

// Signer signs JWTs: with RS256 under a kid whose public key it
// publishes (Sign: id_tokens, launch-tokens), or with HS256 under a secret
// key that is never published (SignMAC: access tokens, which only their
// issuer checks). Keys persist in a Store so tokens survive restarts; Rotate makes a new
// key active and keeps the old ones published until the tokens they signed
// have expired.
type Signer struct {
	store  Store
	now    func() time.Time
	mu     sync.RWMutex
	active *signingKey
	keys   map[string]*signingKey
	jwks   []byte
	mac    *macKey
}

// macKey is the secret HS256 key of tokens only this server ever checks
// (SignMAC). It is never published.
type macKey struct {
	kid     string
	secret  []byte
	signers sync.Map // typ -> jose.Signer
}

const macBucket = "mac_keys"

// storedMAC is the MAC key at rest.
type storedMAC struct {
	KeyID  string `json:"kid"`
	Secret []byte `json:"secret"`
}

// KeyBits is the RSA modulus size for new keys.
var KeyBits = 2048

// NewSigner loads the keys from store, creating the first one when there
// is none. now nil means time.Now.
func NewSigner(ctx context.Context, store Store, now func() time.Time) (*Signer, error) {
	if now == nil {
		now = time.Now
	}
	s := &Signer{store: store, now: now, keys: map[string]*signingKey{}}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	if s.active == nil {
		if err := s.Rotate(ctx, 0); err != nil {
			return nil, err
		}
	}
	if err := s.loadMAC(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// loadMAC loads the MAC key, creating it on first start; the first writer
// wins, so two servers sharing a store agree on one key.
func (s *Signer) loadMAC(ctx context.Context) error {
	for range 2 {
		b, err := s.store.Get(ctx, macBucket, "current")
		if err == nil {
			var m storedMAC
			if err := json.Unmarshal(b, &m); err != nil || m.KeyID == "" || len(m.Secret) < 32 {
				return errors.New("decode MAC key: malformed")
			}
			s.mac = &macKey{kid: m.KeyID, secret: m.Secret}
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("load MAC key: %w", err)
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return fmt.Errorf("generate MAC key: %w", err)
		}
		nb, _ := json.Marshal(storedMAC{KeyID: "mac-" + RandomString(12), Secret: secret})
		if err := s.store.Add(ctx, macBucket, "current", nb, time.Time{}); err != nil && !errors.Is(err, ErrExists) {
			return fmt.Errorf("store MAC key: %w", err)
		}
	}
	return errors.New("load MAC key: not found after creating it")
}

func (s *Signer) load(ctx context.Context) error {
	items, err := s.store.List(ctx, keyBucket)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		var sk storedKey
		if err := json.Unmarshal(it.Value, &sk); err != nil {
			return fmt.Errorf("decode signing key %s: %w", it.Key, err)
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(sk.JWK); err != nil {
			return fmt.Errorf("decode signing key %s: %w", it.Key, err)
		}
		priv, ok := jwk.Key.(*rsa.PrivateKey)
		if !ok {
			return fmt.Errorf("signing key %s is not RSA", it.Key)
		}
		k, err := newSigningKey(jwk.KeyID, priv, sk.Created, sk.Retire)
		if err != nil {
			return err
		}
		s.keys[k.kid] = k
		if k.retire.IsZero() && (s.active == nil || k.created.After(s.active.created)) {
			s.active = k
		}
	}
	s.rebuildLocked()
	return nil
}

func newSigningKey(kid string, priv *rsa.PrivateKey, created, retire time.Time) (*signingKey, error) {
	if err := priv.Validate(); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	fast, err := rsasign.New(priv)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	return &signingKey{kid: kid, priv: priv, fast: fast, created: created, retire: retire}, nil
}

// Rotate creates a new active key. The previous active key stays published
// for keepOld (it must cover the longest lifetime of a token it signed);
// keys whose time is up are dropped.
func (s *Signer) Rotate(ctx context.Context, keepOld time.Duration) error {
	priv, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	now := s.now()
	kid := RandomString(12)
	k, err := newSigningKey(kid, priv, now, time.Time{})
	if err != nil {
		return err
	}
	jwkJSON, err := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.active; old != nil {
		old.retire = now.Add(keepOld)
		b, _ := s.storedLocked(old)
		if err := s.store.Put(ctx, keyBucket, old.kid, b, old.retire); err != nil {
			return fmt.Errorf("demote signing key: %w", err)
		}
	}
	b, _ := json.Marshal(storedKey{JWK: jwkJSON, Created: now})
	if err := s.store.Put(ctx, keyBucket, kid, b, time.Time{}); err != nil {
		return fmt.Errorf("store signing key: %w", err)
	}
	s.keys[kid] = k
	s.active = k
	for id, old := range s.keys {
		if !old.retire.IsZero() && !now.Before(old.retire) {
			delete(s.keys, id)
		}
	}
	s.rebuildLocked()
	return nil
}

func (s *Signer) storedLocked(k *signingKey) ([]byte, error) {
	jwkJSON, err := jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig"}.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return json.Marshal(storedKey{JWK: jwkJSON, Created: k.created, Retire: k.retire})
}

func (s *Signer) rebuildLocked() {
	set := jose.JSONWebKeySet{}
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := s.keys[id]
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig"})
	}
	s.jwks, _ = json.Marshal(set)
}

// ActiveKeyID returns the kid new tokens are signed with.
func (s *Signer) ActiveKeyID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.active.kid
}

// Sign serialises claims as a compact JWS with header typ (empty: "JWT").
func (s *Signer) Sign(claims any, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	s.mu.RLock()
	k := s.active
	s.mu.RUnlock()
	if typ == "" {
		typ = "JWT"
	}
	sig, err := k.signerFor(typ)
	if err != nil {
		return "", err
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

// SignMAC serialises claims as a compact JWS with HS256 under the
// server's secret MAC key: for tokens that only this server checks (its
// own access tokens), where an RSA signature (about a millisecond of CPU
// each) buys nothing. Verify accepts them; nobody else can check or forge
// them.
func (s *Signer) SignMAC(claims any, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	if typ == "" {
		typ = "JWT"
	}
	m := s.mac
	var sig jose.Signer
	if v, ok := m.signers.Load(typ); ok {
		sig = v.(jose.Signer)
	} else {
		opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", m.kid)
		if sig, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: m.secret}, opts); err != nil {
			return "", fmt.Errorf("make MAC signer: %w", err)
		}
		m.signers.Store(typ, sig)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

// JWKSJSON returns the published JSON Web Key Set.
func (s *Signer) JWKSJSON() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.jwks
}

// ServeHTTP serves the JWKS (RFC 7517) for jwks_uri.
func (s *Signer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := s.JWKSJSON()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(b)
}

// ErrBadToken is returned by Verify for any token that is not one of ours.
var ErrBadToken = errors.New("token not valid")

// Verified is what Verify learnt from a token's header.
type Verified struct {
	KeyID string
	Type  string
}

// Verify checks token's RS256 signature against this signer's published
// keys (or an HS256 token from SignMAC against the secret MAC key) and
// decodes its claims into out. It checks no claims: callers
// check exp, aud and friends with their own rules.
func (s *Signer) Verify(token string, out any) (Verified, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256, jose.HS256})
	if err != nil || len(jws.Signatures) != 1 {
		return Verified{}, ErrBadToken
	}
	h := jws.Signatures[0].Header
	var key any
	switch h.Algorithm {
	case string(jose.HS256):
		// Only our own secret checks an HS256 token; never a public key.
		if s.mac == nil || h.KeyID != s.mac.kid {
			return Verified{}, ErrBadToken
		}
		key = s.mac.secret
	case string(jose.RS256):
		s.mu.RLock()
		k := s.keys[h.KeyID]
		s.mu.RUnlock()
		if k == nil {
			return Verified{}, ErrBadToken
		}
		if !k.retire.IsZero() && !s.now().Before(k.retire) {
			return Verified{}, ErrBadToken
		}
		key = rs256Verifier{k.fast}
	default:
		return Verified{}, ErrBadToken
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return Verified{}, ErrBadToken
	}
	// The payload is signed by this server, so encoding/json decodes it
	// (go-jose's own decoder is several times slower).
	if err := json.Unmarshal(payload, out); err != nil {
		return Verified{}, ErrBadToken
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return Verified{KeyID: h.KeyID, Type: typ}, nil
}

// rs256Verifier checks RS256 signatures of one key through rsasign
// (libcrypto where available) for go-jose's Verify and Claims.
type rs256Verifier struct {
	k interface {
		VerifySHA256(payload, sig []byte) error
	}
}

func (v rs256Verifier) VerifyPayload(payload, sig []byte, alg jose.SignatureAlgorithm) error {
	if alg != jose.RS256 {
		return fmt.Errorf("verify: algorithm %s not supported", alg)
	}
	return v.k.VerifySHA256(payload, sig)
}

// RS256Verifier checks RS256 signatures by pub, a partner's published key,
// for go-jose's Verify and Claims: like a *rsa.PublicKey passed to them,
// but through rsasign, so on libcrypto where it is available, as every
// other RS256 check in sim (BenchmarkPartnerVerify: about 15% less time
// per check, go-jose's parsing included).
func RS256Verifier(pub *rsa.PublicKey) (jose.OpaqueVerifier, error) {
	k, err := rsasign.NewPublic(pub)
	if err != nil {
		return nil, fmt.Errorf("rs256 verifier: %w", err)
	}
	return rs256Verifier{k}, nil
}
