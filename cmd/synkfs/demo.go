package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/replica"
	"github.com/synkfs/synkfs/server"
)

type demoCmd struct {
	Dir string `arg:"" optional:"" help:"Where to make the folders alice/ and bob/ (default: a new temporary folder)." type:"path"`
}

// demoRecords are the sample records alice starts with.
var demoRecords = map[string]string{
	"notes/welcome.json": `{"title": "Welcome to synkfs", "body": "Edit me in alice/ and watch bob/ follow."}`,
	"todo/1.json":        `{"task": "Edit a record in one folder", "done": false}`,
	"todo/2.json":        `{"task": "Delete a record in the other", "done": false}`,
	"people/ada.json":    `{"name": "Ada", "role": "engineer"}`,
}

func (c *demoCmd) Run(e *env) error {
	dir := c.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "synkfs-demo-")
		if err != nil {
			return err
		}
		dir = d
	}
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	for rel, body := range demoRecords {
		p := filepath.Join(alice, filepath.FromSlash(rel))
		if _, err := os.Stat(p); err == nil {
			continue // a demo folder used before keeps its records
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(bob, 0o755); err != nil {
		return err
	}

	// The server: in memory, on a free loopback port. Its logs stay quiet
	// so that the flow of changes is what the newcomer sees.
	quiet := slog.New(slog.DiscardHandler)
	srv := server.New(memstore.New(), &server.Options{Logger: quiet})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	url := "ws://" + ln.Addr().String() + "/"

	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(e.stdout, format, args...)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var wg sync.WaitGroup
	var errs []error
	var errMu sync.Mutex
	say("synkfs demo: a server at %s and two synced folders:\n", url)
	say("  %s\n  %s\n", alice, bob)
	say("Edit, create or delete a <type>/<id>.json file in one of them and watch it reach the other.\n")
	say("Try also: synkfs status %s   and   synkfs conflicts %s\n", alice, alice)
	say("Press Ctrl-C to stop (the folders stay in %s).\n\n", dir)

	for _, name := range []string{"alice", "bob"} {
		folder := filepath.Join(dir, name)
		r, err := replica.Open(folder, &replica.Options{
			Logger:  quiet,
			OnEvent: func(ev replica.Event) { say("%s\n", describe(name, ev)) },
		})
		if err != nil {
			return err
		}
		r.SetServer(url)
		cl := client.New(client.Options{URL: url, ClientID: r.ClientID(), Logger: quiet}, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx, cl); err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				errMu.Unlock()
				cancel()
			}
			if err := r.Close(); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = hs.Shutdown(sctx)
	say("\nstopped; the folders stay in %s\n", dir)
	return errors.Join(errs...)
}

// describe turns a replica event into one line for the demo.
func describe(who string, ev replica.Event) string {
	what := ev.Path
	if what == "" {
		what = ev.Key.Path()
	}
	verb := "changed"
	if ev.Deleted {
		verb = "deleted"
	}
	switch ev.Kind {
	case replica.EventStaged:
		return fmt.Sprintf("%-5s  saw %s %s locally", who, what, verb)
	case replica.EventPushed:
		return fmt.Sprintf("%-5s  -> server: %s %s", who, what, verb)
	case replica.EventPulled:
		return fmt.Sprintf("%-5s  <- server: %s %s", who, what, verb)
	case replica.EventConflict:
		return fmt.Sprintf("%-5s  conflict on %s: %s", who, what, ev.Message)
	}
	return fmt.Sprintf("%-5s  %s %s: %s", who, ev.Kind, what, ev.Message)
}
