// Command synkfs replicates JSON records that live as plain files.
//
// Each subcommand is a struct with a Run method in a file of its own;
// kong builds the parser and the help text from the struct tags. The
// README has the quick start.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/alecthomas/kong"
)

// Exit codes are stable so that scripts can rely on them.
const (
	exitOK       = 0
	exitError    = 1 // the command failed; the message says why
	exitUsage    = 2 // bad flags or arguments
	exitNoServer = 3 // the server could not be reached; nothing was lost
)

// cli is the command line.
type cli struct {
	LogLevel  string `help:"Log level: debug, info, warn or error." enum:"debug,info,warn,error" default:"info" env:"SYNKFS_LOG_LEVEL"`
	LogFormat string `help:"Log format: text or json." enum:"text,json" default:"text" env:"SYNKFS_LOG_FORMAT"`

	Serve     serveCmd     `cmd:"" help:"Run the sync server (in memory unless --data or --postgres is given)."`
	Sync      syncCmd      `cmd:"" help:"Keep a folder of <type>/<id>.json records in sync with a server."`
	Mount     mountCmd     `cmd:"" help:"Mount the records as a file system (FUSE), synced with a server if --server is given."`
	Status    statusCmd    `cmd:"" help:"Show a synced folder's state: connection, versions, staged changes, conflicts, bad files."`
	Conflicts conflictsCmd `cmd:"" help:"List, show and settle conflicts in a synced folder."`
	Demo      demoCmd      `cmd:"" help:"Run an in-memory server and two synced folders to try synkfs."`
	Token     tokenCmd     `cmd:"" help:"Manage the tokens a server accepts."`
	Version   versionCmd   `cmd:"" help:"Print the version of synkfs."`
}

// env is what every command's Run gets.
type env struct {
	ctx    context.Context // cancelled by SIGINT or SIGTERM
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
}

// codeError is an error that carries the process exit code.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// kongExit is how kong's exit requests (after --help) leave Parse.
type kongExit int

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run parses args, runs one command and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) (code int) {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("synkfs"),
		kong.Description("Offline-first replication of JSON records that live as plain files."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(kongExit(code)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintln(stderr, "synkfs:", err)
		return exitError
	}
	defer func() {
		if r := recover(); r != nil {
			k, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			code = int(k)
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "synkfs: %v\nRun 'synkfs --help' for usage.\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, log: newLogger(stderr, c.LogLevel, c.LogFormat)}
	if err := kctx.Run(e); err != nil {
		fmt.Fprintln(stderr, "synkfs:", err)
		var ce *codeError
		if errors.As(err, &ce) {
			return ce.code
		}
		return exitError
	}
	return exitOK
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

type versionCmd struct{}

func (versionCmd) Run(e *env) error {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	fmt.Fprintln(e.stdout, "synkfs", v)
	return nil
}
