// Package web holds the browser side of synkfs, built into the binary:
// synk.js, an offline-first replica of the records in IndexedDB that
// speaks the protocol of docs/PROTOCOL.md, and a demo page that edits the
// records with it. `synkfs serve` serves them to plain (non-WebSocket)
// HTTP requests.
//
// The assets are plain files (no build step): index.html, demo.js,
// demo.css, synk.js and sw.js (a service worker that keeps a copy of the
// page, so it opens while the server is away). Handler serves index.html
// at "/" and each other file at "/<name>"; anything else is 404.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed index.html demo.js demo.css synk.js sw.js
var files embed.FS

// asset is one embedded file with what its responses carry.
type asset struct {
	name  string
	ctype string
	etag  string
	data  []byte
}

// assets maps a URL path to its file.
var assets = func() map[string]*asset {
	m := map[string]*asset{}
	add := func(path, name, ctype string) {
		data, err := files.ReadFile(name)
		if err != nil {
			panic("web: missing embedded file " + name) // caught by the tests
		}
		sum := sha256.Sum256(data)
		m[path] = &asset{name: name, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, data: data}
	}
	add("/", "index.html", "text/html; charset=utf-8")
	add("/synk.js", "synk.js", "text/javascript; charset=utf-8")
	add("/demo.js", "demo.js", "text/javascript; charset=utf-8")
	add("/demo.css", "demo.css", "text/css; charset=utf-8")
	add("/sw.js", "sw.js", "text/javascript; charset=utf-8")
	return m
}()

// Paths returns the URL paths Handler serves.
func Paths() []string {
	return []string{"/", "/synk.js", "/demo.js", "/demo.css", "/sw.js"}
}

// csp keeps the page to its own scripts, styles and server.
const csp = "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler returns the handler of the page and its files. It answers GET
// and HEAD (405 otherwise), with an ETag so that browsers revalidate
// instead of keeping a stale copy after an upgrade.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	a := assets[r.URL.Path]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if a.name == "index.html" {
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
	}
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
}
