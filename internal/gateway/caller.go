package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/sutazai/herd/internal/wire"
)

// HTTP request and response headers of the doors (docs/protocol.md, "HTTP
// doors").
const (
	// HdrPriority and HdrAgent choose the request's priority and agent;
	// an API key's agent and ceiling win over them.
	HdrPriority = "X-Herd-Priority"
	HdrAgent    = "X-Herd-Agent"
	// HdrCache is the request's cache policy (Herd-Cache) and, on the
	// answer, how it was served: miss, hit or coalesced.
	HdrCache = "X-Herd-Cache"
	// HdrTimeout is the request's Herd-Timeout (a Go duration).
	HdrTimeout = "X-Herd-Timeout"
	// HdrQueueMs and HdrModel are herd's Herd-Queue-Ms and the model that
	// answered.
	HdrQueueMs = "X-Herd-Queue-Ms"
	HdrModel   = "X-Herd-Model"
	// HdrRequestID is the request id (herd's Herd-Request-Id).
	HdrRequestID = "X-Request-Id"
	// HdrIdempotencyKey names the request: a retry under the same key gets
	// the one stored outcome.
	HdrIdempotencyKey = "Idempotency-Key"
)

// Caller is who a request is from and how herd should run it.
type Caller struct {
	Agent    string
	Priority wire.Priority
	// ID is the request id: <agent>=<key> for an Idempotency-Key (a key
	// that is not a token, or too long, is hashed), else <agent>=gw-<new>.
	ID string
	// Keyed is true when the caller gave an Idempotency-Key: it means to
	// retry, so its disconnect does not cancel the request.
	Keyed bool
	// Cache and Timeout are the Herd-Cache and Herd-Timeout to send; empty
	// sends none.
	Cache, Timeout string
}

// Defaults are the caller settings of a request that names none.
type Defaults struct {
	Agent    string
	Priority wire.Priority
}

// ResolveCaller reads the caller from a request's headers. With keys
// enabled the Bearer key decides the agent (ErrUnauthorized without a
// valid one, ErrForbidden when X-Herd-Agent names another) and caps the
// priority; without keys, X-Herd-Agent and X-Herd-Priority decide, else d.
// A malformed header is a *wire.Error with invalid_request. newID returns
// a fresh unique token for requests without an Idempotency-Key.
func ResolveCaller(h http.Header, keys Keys, d Defaults, newID func() string) (Caller, error) {
	c := Caller{Agent: d.Agent, Priority: d.Priority}
	if a := h.Get(HdrAgent); a != "" {
		if !wire.ValidToken(a) {
			return Caller{}, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("%s %q must be 1-128 characters of A-Z a-z 0-9 _ = -", HdrAgent, a))
		}
		c.Agent = a
	}
	if p := h.Get(HdrPriority); p != "" {
		c.Priority = wire.Priority(strings.ToLower(p))
		if !c.Priority.Valid() {
			return Caller{}, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("%s %q must be high, normal or low", HdrPriority, p))
		}
	}
	if keys.Enabled() {
		token, ok := bearer(h.Get("Authorization"))
		if !ok {
			return Caller{}, ErrUnauthorized
		}
		k, ok := keys.Lookup(token)
		if !ok {
			return Caller{}, ErrUnauthorized
		}
		if h.Get(HdrAgent) != "" && h.Get(HdrAgent) != k.Agent {
			return Caller{}, ErrForbidden
		}
		c.Agent = k.Agent
		if c.Priority.Index() < k.Ceiling.Index() {
			c.Priority = k.Ceiling
		}
	}
	if key := h.Get(HdrIdempotencyKey); key != "" {
		id, err := ScopedID(c.Agent, key)
		if err != nil {
			return Caller{}, err
		}
		c.ID, c.Keyed = id, true
	} else {
		c.ID = c.Agent + "=gw-" + newID()
	}
	c.Cache = h.Get(HdrCache)
	c.Timeout = h.Get(HdrTimeout)
	return c, nil
}

// ScopedID returns the request id of an Idempotency-Key: <agent>=<key>
// when that is a valid id, else <agent>=k-<base64url of SHA-256 of key>
// (any key, of any length, maps to one id).
func ScopedID(agent, key string) (string, error) {
	if id := agent + "=" + key; wire.ValidToken(id) {
		return id, nil
	}
	sum := sha256.Sum256([]byte(key))
	id := agent + "=k-" + base64.RawURLEncoding.EncodeToString(sum[:])
	if !wire.ValidToken(id) {
		return "", wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("agent %q is too long for an %s", agent, HdrIdempotencyKey))
	}
	return id, nil
}

// bearer returns the token of "Bearer <token>".
func bearer(auth string) (string, bool) {
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
