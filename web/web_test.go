package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/web"
)

// The server serves the page and its files to plain requests, with the
// right types and revalidation, and still upgrades WebSockets at "/".
func TestServedByServer(t *testing.T) {
	srv := server.New(memstore.New(), nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Shutdown(t.Context())
	})
	want := map[string]string{
		"/":         "text/html",
		"/synk.js":  "text/javascript",
		"/demo.js":  "text/javascript",
		"/demo.css": "text/css",
		"/sw.js":    "text/javascript",
	}
	for _, p := range web.Paths() {
		res, err := http.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), want[p]) || len(body) == 0 {
			t.Fatalf("GET %s: %s %q, %d bytes", p, res.Status, res.Header.Get("Content-Type"), len(body))
		}
		etag := res.Header.Get("ETag")
		req, _ := http.NewRequest("GET", hs.URL+p, nil)
		req.Header.Set("If-None-Match", etag)
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if etag == "" || res.StatusCode != http.StatusNotModified {
			t.Fatalf("GET %s with If-None-Match %s: %s", p, etag, res.Status)
		}
	}
	res, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `src="/demo.js"`) || res.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("page: %s", body)
	}
	for _, p := range []string{"/nope", "/index.html", "/synk.js/x"} {
		res, err := http.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %s, want 404", p, res.Status)
		}
	}
	res, err = http.Post(hs.URL+"/synk.js", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /synk.js: %s", res.Status)
	}
	// /healthz is still the server's.
	res, err = http.Get(hs.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.HasPrefix(string(body), "ok ") {
		t.Fatalf("healthz: %s", body)
	}
}
