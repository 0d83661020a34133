package chaos

import (
	"net/http"
	"sync/atomic"

	"github.com/coder/websocket"
)

func websocketHandler(got *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			got.Add(1)
			if err := c.Write(r.Context(), typ, data); err != nil {
				return
			}
		}
	})
}
