package client

import (
	"net/http"

	"github.com/synkfs/synkfs/wire"
)

// refusal turns an upgrade the server refused for who we are into a
// permanent *ServerError, so that `sync --once` says so instead of calling
// the server unreachable. Other answers return nil.
func refusal(resp *http.Response) *ServerError {
	if resp == nil {
		return nil
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return &ServerError{Code: wire.CodeUnauthorized, Message: "the server needs a valid token: pass --token-file FILE or set SYNKFS_TOKEN (the secret 'synkfs token add' printed)"}
	case http.StatusForbidden:
		return &ServerError{Code: wire.CodeForbidden, Message: "the server refused this connection (403): a browser origin not on its --allow-origin list, or a token without access"}
	}
	return nil
}
