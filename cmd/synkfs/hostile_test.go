package main

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/replica"
	"github.com/synkfs/synkfs/wire"
)

// hostilePeer is a scripted server: it answers the hello with a welcome,
// then runs script on the link.
func hostilePeer(t *testing.T, script func(ctx context.Context, c *wire.Conn)) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.SetReadLimit(64 << 20)
		c := wire.NewConn(ws, &wire.Limits{MaxMessage: 64 << 20})
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if _, err := c.Read(ctx); err != nil { // hello
			return
		}
		if err := c.Write(ctx, &wire.Welcome{Protocol: 1, Epoch: "hostile", Version: 1, Features: []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot}}); err != nil {
			return
		}
		script(ctx, c)
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// raw writes a text frame as is.
func raw(ctx context.Context, c *wire.Conn, s string) {
	_ = c.WS().Write(ctx, websocket.MessageText, []byte(s))
}

// TestHostileServer: a server that sends crafted record names, invalid
// JSON and oversized frames to a replica never gets a byte written outside
// the synced folder, nor a link created in it.
func TestHostileServer(t *testing.T) {
	names := []string{"../x", "../../escaped", "/etc/passwd", "a/../../b", "..", ".", "x\x00y", `..\..\w`,
		".synk", strings.Repeat("../", 40) + "deep"}
	var crafted []synkfs.Record
	for _, n := range names {
		crafted = append(crafted,
			synkfs.Record{Key: synkfs.Key{Type: n, ID: "1"}, Version: 1, Body: []byte(`{"pwned":true}`)},
			synkfs.Record{Key: synkfs.Key{Type: "note", ID: n}, Version: 1, Body: []byte(`{"pwned":true}`)},
		)
	}
	scripts := map[string]func(ctx context.Context, c *wire.Conn){
		"crafted names": func(ctx context.Context, c *wire.Conn) {
			c.Read(ctx) // the pull
			c.Write(ctx, &wire.Changes{Version: 1, Update: crafted})
			c.Read(ctx)
		},
		"names too long": func(ctx context.Context, c *wire.Conn) {
			c.Read(ctx)
			long := strings.Repeat("../", 2000)
			c.Write(ctx, &wire.Changes{Version: 1, Update: []synkfs.Record{{Key: synkfs.Key{Type: long, ID: long}, Version: 1, Body: []byte(`{}`)}}})
			c.Read(ctx)
		},
		"crafted names raw": func(ctx context.Context, c *wire.Conn) {
			c.Read(ctx)
			raw(ctx, c, `{"type":"changes","version":1,"update":[{"type":"../../../tmp","id":"../x","version":1,"a":1},{"type":"note","id":"/abs","version":1}],"delete":[{"type":"..","id":"..","version":1}]}`)
			c.Read(ctx)
		},
		"invalid json": func(ctx context.Context, c *wire.Conn) {
			c.Read(ctx)
			for _, s := range []string{"{", "null", `{"type":"changes","version":-1}`, `{"type":"changes","version":1,"update":[{"type":1,"id":"x"}]}`,
				`{"type":"changes","version":1,"update":` + strings.Repeat("[", 100000) + `}`} {
				raw(ctx, c, s)
			}
			c.Read(ctx)
		},
		"oversized frame": func(ctx context.Context, c *wire.Conn) {
			c.Read(ctx)
			raw(ctx, c, `{"type":"changes","version":1,"update":[{"type":"note","id":"big","version":1,"x":"`+strings.Repeat("x", 3<<20)+`"}]}`)
			c.Read(ctx)
		},
		"oversized zstd bomb": func(ctx context.Context, c *wire.Conn) {
			c.Read(ctx)
			c.EnableZstd()
			c.Write(ctx, &wire.Changes{Version: 1, Update: []synkfs.Record{{Key: synkfs.Key{Type: "note", ID: "bomb"}, Version: 1, Body: []byte(`{"x":"` + strings.Repeat("z", 3<<20) + `"}`)}}})
			c.Read(ctx)
		},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "synced")
			r, err := replica.Open(dir, &replica.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			url := hostilePeer(t, script)
			cl := client.New(client.Options{URL: url, ClientID: r.ClientID(), PingTimeout: 3 * time.Second,
				Limits: &wire.Limits{MaxMessage: 1 << 20, MaxRecords: 1000}}, r)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = r.SyncOnce(ctx, cl) // may fail; what matters is where files went
			if strings.HasPrefix(name, "crafted") {
				// The names are stored, escaped, inside the folder.
				if err != nil {
					t.Fatalf("sync: %v", err)
				}
				for _, want := range []string{"%2E.%2Fx/1.json", "note/%2Fetc%2Fpasswd.json", "%2E./1.json", "note/a%2F..%2F..%2Fb.json", "note/x%00y.json"} {
					if name == "crafted names raw" {
						want = "%2E.%2F..%2F..%2Ftmp/%2E.%2Fx.json"
					}
					if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(want))); err != nil {
						t.Errorf("crafted record not stored escaped: %v", err)
					}
				}
			}

			ents, err := os.ReadDir(parent)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != "synced" {
				t.Fatalf("files written beside the synced folder: %v", ents)
			}
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.Type()&fs.ModeSymlink != 0 {
					t.Errorf("link created in the synced folder: %s", p)
				}
				rel, _ := filepath.Rel(dir, p)
				if rel == "." || strings.HasPrefix(rel, ".synk") {
					return nil
				}
				if strings.Count(rel, string(filepath.Separator)) > 1 {
					t.Errorf("record file deeper than <type>/<id>.json: %s", rel)
				}
				if !d.IsDir() {
					if data, _ := os.ReadFile(p); strings.Contains(string(data), "pwned") && strings.HasPrefix(filepath.Base(filepath.Dir(p)), "..") {
						t.Errorf("a crafted name became a dot-folder: %s", rel)
					}
				}
				return nil
			})
		})
	}
}
