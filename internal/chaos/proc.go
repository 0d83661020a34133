package chaos

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/replica"
)

// ChildEnv, set to 1 in a test binary's environment, makes TestMain run
// SyncMain instead of the tests: the harness starts replicas it can kill
// with SIGKILL that way when no synkfs binary is given.
const ChildEnv = "SYNKFS_CHAOS_CHILD"

// SyncMain runs a synced folder the way `synkfs sync` does (replica.Open,
// client.New, Run until SIGINT or SIGTERM), taking the same arguments:
//
//	sync --server URL [--on-conflict S] [--confirm-deletes] DIR
//
// It returns the process exit code. Heartbeats and backoff are shortened
// so that a chaos schedule heals in seconds.
func SyncMain(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "sync" {
		fmt.Fprintln(stderr, "usage: sync --server URL [--on-conflict S] [--confirm-deletes] DIR")
		return 2
	}
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("server", "", "server URL")
	onConflict := fs.String("on-conflict", "merge", "conflict strategy")
	confirm := fs.Bool("confirm-deletes", false, "let one sweep delete many records")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
		return 2
	}
	strategy, err := replica.ParseStrategy(*onConflict)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := replica.Open(fs.Arg(0), &replica.Options{
		OnConflict: strategy, ConfirmDeletes: *confirm, Logger: log,
		VerifyEvery: 500 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer r.Close()
	r.SetServer(*url)
	c := client.New(client.Options{URL: *url, ClientID: r.ClientID(), Logger: log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		PingInterval: 300 * time.Millisecond, PingTimeout: 700 * time.Millisecond}, r)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Run(ctx, c); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
