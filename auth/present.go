package auth

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// How a client presents its secret.
//
// Programs send the header "Authorization: Bearer <secret>" with the
// WebSocket upgrade. Browsers cannot set headers on a WebSocket, so they
// offer two subprotocols instead, Subprotocol and SubprotocolBearerPrefix
// followed by the secret:
//
//	new WebSocket(url, ["synkfs", "synkfs.bearer." + secret])
//
// The server selects Subprotocol, so the secret is never echoed back. A
// query parameter was not chosen: URLs end up in proxy and access logs,
// in browser history and in Referer headers; upgrade headers usually do
// not.
const (
	Subprotocol             = "synkfs"
	SubprotocolBearerPrefix = "synkfs.bearer."
	// EnvToken is the environment variable a client reads its secret from
	// when it is given no token file.
	EnvToken = "SYNKFS_TOKEN"
)

// FromRequest returns the secret an upgrade request presents, from its
// Authorization header or its subprotocols, and "" if there is none.
// present reports whether the request tried to present one at all (a
// malformed Authorization header counts).
func FromRequest(r *http.Request) (secret string, present bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(rest), true
		}
		return "", true
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(p), SubprotocolBearerPrefix); ok {
				return s, true
			}
		}
	}
	return "", false
}

// Header returns the upgrade header that presents secret.
func Header(secret string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+secret)
	return h
}

// ClientSecret returns the secret a client should present: the first line
// of the file at path when path is set, else the value of $SYNKFS_TOKEN, else
// "" (no token). A secret is never taken from a command-line flag, where
// every user of the machine could read it in the process list.
func ClientSecret(path string) (string, error) {
	if path == "" {
		return strings.TrimSpace(os.Getenv(EnvToken)), nil
	}
	data, err := readSmall(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	secret := strings.TrimSpace(line)
	if secret == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	if strings.HasPrefix(secret, "{") {
		return "", errors.New("the token file given is the server's list of token hashes; give the file holding the secret that 'synkfs token add' printed")
	}
	return secret, nil
}
