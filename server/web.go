package server

import (
	"net/http"

	"github.com/synkfs/synkfs/web"
)

// webAssets serves the browser demo page and synk.js (package web).
var webAssets = web.Handler()

// serveWeb answers a plain HTTP request (not a WebSocket upgrade) that
// /healthz and /metrics do not take: the demo page at "/", its files, or
// 404.
func serveWeb(w http.ResponseWriter, r *http.Request) { webAssets.ServeHTTP(w, r) }
