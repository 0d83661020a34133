// Package auth holds synkfs's bearer tokens: the token file that
// `synkfs serve --tokens` reads and `synkfs token add` writes, the check of
// a presented secret against it, and the ways a client presents one.
//
// A token is a name, a role (read-only or read-write) and an optional
// allow-list of record types. Its secret is 32 random bytes, shown to the
// operator once when the token is added; the file keeps only the SHA-256 of
// the secret, so a leaked file does not let anyone connect. Secrets are
// checked in constant time and no function of this package logs or returns
// them in an error.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is what a token may do.
type Role string

// Roles.
const (
	// ReadOnly tokens may pull changes and snapshots; every push is refused.
	ReadOnly Role = "read-only"
	// ReadWrite tokens may pull and push.
	ReadWrite Role = "read-write"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case ReadOnly, ReadWrite:
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q: use %s or %s", s, ReadOnly, ReadWrite)
}

// SecretPrefix starts every secret, so that a secret pasted in the wrong
// place is recognisable (and secret scanners can find it).
const SecretPrefix = "synkfs_"

// secretBytes is the entropy of a secret: 256 bits.
const secretBytes = 32

// Token is one entry of a token file. It never holds the secret.
type Token struct {
	// Name identifies the token in logs and in the file; unique per file.
	Name string `json:"name"`
	// Role is ReadOnly or ReadWrite.
	Role Role `json:"role"`
	// Types, when not empty, are the only record types the token may see
	// and write; others are invisible to it.
	Types []string `json:"types,omitempty"`
	// Hash is "sha256:" and the hex SHA-256 of the secret.
	Hash string `json:"hash"`
	// Created is when the token was added.
	Created time.Time `json:"created,omitzero"`
}

// CanWrite reports whether the token may push changes.
func (t *Token) CanWrite() bool { return t.Role == ReadWrite }

// Limited reports whether the token sees only some record types.
func (t *Token) Limited() bool { return len(t.Types) > 0 }

// MayAccess reports whether the token may see (and, if it can write, write)
// records of type typ.
func (t *Token) MayAccess(typ string) bool {
	return len(t.Types) == 0 || slices.Contains(t.Types, typ)
}

// Same reports whether t and u are the same token with the same rights:
// equal names, hashes and roles, and the same types in any order. Created
// is not compared. A client connected with t keeps exactly its rights
// under a set whose token of that name is the Same.
func (t *Token) Same(u *Token) bool {
	if t.Name != u.Name || t.Hash != u.Hash || t.Role != u.Role {
		return false
	}
	a, b := slices.Clone(t.Types), slices.Clone(u.Types)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// Validate checks the token's fields (not the secret).
func (t *Token) Validate() error {
	if t.Name == "" {
		return errors.New("token without a name")
	}
	if strings.ContainsFunc(t.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("token name %q has control characters", t.Name)
	}
	if _, err := ParseRole(string(t.Role)); err != nil {
		return fmt.Errorf("token %q: %w", t.Name, err)
	}
	for _, typ := range t.Types {
		if typ == "" {
			return fmt.Errorf("token %q: empty record type in its types", t.Name)
		}
	}
	if _, err := parseHash(t.Hash); err != nil {
		return fmt.Errorf("token %q: %w", t.Name, err)
	}
	return nil
}

const hashPrefix = "sha256:"

// HashSecret returns the hash of secret as a token file stores it.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hashPrefix + hex.EncodeToString(sum[:])
}

func parseHash(h string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	hx, ok := strings.CutPrefix(h, hashPrefix)
	if !ok || len(hx) != 2*sha256.Size {
		return out, errors.New("hash is not sha256:<64 hex digits>")
	}
	if _, err := hex.Decode(out[:], []byte(hx)); err != nil {
		return out, errors.New("hash is not sha256:<64 hex digits>")
	}
	return out, nil
}

// NewSecret returns a new random secret (SecretPrefix and 256 random bits
// in unpadded base64url) and its hash for the token file.
func NewSecret() (secret, hash string, err error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("new secret: %w", err)
	}
	secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, HashSecret(secret), nil
}

// Set is the tokens of one file, ready to check secrets against. It is
// immutable and safe for concurrent use.
type Set struct {
	tokens []Token
	hashes [][sha256.Size]byte
	byName map[string]int // index in tokens
}

// NewSet checks tokens and returns them as a Set. Names must be unique.
func NewSet(tokens []Token) (*Set, error) {
	s := &Set{byName: make(map[string]int, len(tokens))}
	for _, t := range tokens {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		if _, dup := s.byName[t.Name]; dup {
			return nil, fmt.Errorf("two tokens are named %q", t.Name)
		}
		s.byName[t.Name] = len(s.tokens)
		h, _ := parseHash(t.Hash)
		t.Types = slices.Clone(t.Types)
		s.tokens = append(s.tokens, t)
		s.hashes = append(s.hashes, h)
	}
	return s, nil
}

// Len returns the number of tokens.
func (s *Set) Len() int { return len(s.tokens) }

// Tokens returns a copy of the tokens, in file order.
func (s *Set) Tokens() []Token {
	out := make([]Token, len(s.tokens))
	for i, t := range s.tokens {
		t.Types = slices.Clone(t.Types)
		out[i] = t
	}
	return out
}

// Lookup returns the token named name. A nil Set has no tokens.
func (s *Set) Lookup(name string) (Token, bool) {
	if s == nil {
		return Token{}, false
	}
	i, ok := s.byName[name]
	if !ok {
		return Token{}, false
	}
	t := s.tokens[i]
	t.Types = slices.Clone(t.Types)
	return t, true
}

// Check returns the token whose secret is secret. It hashes secret and
// compares the hash with every token's in constant time, whatever matches,
// so the time taken says nothing about which token, if any, is close.
func (s *Set) Check(secret string) (Token, bool) {
	if secret == "" {
		return Token{}, false
	}
	h := sha256.Sum256([]byte(secret))
	found := -1
	for i := range s.hashes {
		if subtle.ConstantTimeCompare(h[:], s.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Token{}, false
	}
	t := s.tokens[found]
	t.Types = slices.Clone(t.Types)
	return t, true
}
