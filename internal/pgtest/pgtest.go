// Package pgtest gives tests a fresh, empty PostgreSQL database each.
//
// The server comes from one of two places:
//
//   - SYNKFS_TEST_POSTGRES, when set: the URL (postgres://...) of a server
//     on which the user may create databases. CI sets it to the cluster it
//     installs.
//   - Otherwise a private, throwaway cluster that the first URL call of a
//     test binary starts (initdb, then postgres on a free loopback port and
//     a socket directory of its own, with fsync off) and that Main stops
//     when the binary's tests end. initdb, pg_ctl and postgres are looked
//     for under /usr/lib/postgresql/*/bin (highest version first), then in
//     PATH. PostgreSQL refuses to run as root, so as root the cluster runs
//     as the postgres user through runuser.
//
// When neither can be had, URL skips the test with the reason; when the
// environment variable CI is "true" it fails it instead.
//
// Packages that use URL must run their tests through Main:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that points the tests at an
// existing server.
const EnvURL = "SYNKFS_TEST_POSTGRES"

var (
	mainCalled bool

	once    sync.Once
	baseURL string // a URL of the server's postgres database
	baseErr error
	stopFn  func() // stops the private cluster; nil if none was started
)

// Main runs the tests of m, then stops the private cluster if one was
// started, and exits with the tests' exit code.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that exits by itself (testscript.Main takes
// an m to run): it runs m, stops the private cluster if one was started,
// and returns m's exit code.
func Run(m interface{ Run() int }) int {
	mainCalled = true
	code := m.Run()
	if stopFn != nil {
		stopFn()
	}
	return code
}

// URL returns the URL of a new, empty database made for this test only;
// it is dropped (closing any connection still open to it) when the test
// ends.
func URL(t testing.TB) string {
	t.Helper()
	if os.Getenv(EnvURL) == "" && !mainCalled {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain, so the private PostgreSQL cluster is stopped at exit")
	}
	once.Do(func() { baseURL, baseErr = server() })
	if baseErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: no PostgreSQL server for the tests (CI=true): %v", baseErr)
		}
		t.Skipf("pgtest: no PostgreSQL server for the tests (set %s or install PostgreSQL): %v", EnvURL, baseErr)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "synkfs_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// admin runs one statement on the server's maintenance database.
func admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// server returns the URL of the server to use, starting a private
// cluster when no URL is set.
func server() (string, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			return "", fmt.Errorf("%s must be a postgres:// URL", EnvURL)
		}
		return u, nil
	}
	return startCluster()
}

// binDir finds the directory holding initdb, pg_ctl and postgres.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // "15" after "9.6"
		va, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(a)), 64)
		vb, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(b)), 64)
		return -cmpFloat(va, vb)
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found under /usr/lib/postgresql/*/bin or in PATH")
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// startCluster makes and starts a throwaway cluster, setting stopFn.
func startCluster() (string, error) {
	bin, err := binDir()
	if err != nil {
		return "", err
	}
	// As root, run everything as the postgres user.
	var prefix []string
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", errors.New("running as root and there is no postgres user to run PostgreSQL as")
		}
		rb, err := exec.LookPath("runuser")
		if err != nil {
			return "", errors.New("running as root and runuser is missing")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		prefix = []string{rb, "-u", "postgres", "--"}
	}
	reap(bin, prefix)
	var dir string
	fail := func(err error) (string, error) {
		_ = os.RemoveAll(dir)
		return "", err
	}
	dir, err = os.MkdirTemp("", dirPrefix)
	if err != nil {
		return "", err
	}
	// The owner file lets a later run stop this cluster if this process
	// dies without running Main's cleanup (killed by a timeout, say).
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail(err)
	}
	data, sock, logf := filepath.Join(dir, "data"), filepath.Join(dir, "sock"), filepath.Join(dir, "log")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return fail(err)
	}
	if uid >= 0 {
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				return fail(err)
			}
		}
	}
	run := func(name string, args ...string) error {
		argv := append(slices.Clone(prefix), append([]string{filepath.Join(bin, name)}, args...)...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, out)
		}
		return nil
	}
	if err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	opts := fmt.Sprintf("-c port=%d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c full_page_writes=off -c max_connections=200", port, sock)
	if err := run("pg_ctl", "-D", data, "-l", logf, "-w", "-t", "60", "-o", opts, "start"); err != nil {
		if log, rerr := os.ReadFile(logf); rerr == nil {
			err = fmt.Errorf("%w\n%s", err, log)
		}
		return fail(err)
	}
	stopFn = func() {
		_ = run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
		_ = os.RemoveAll(dir)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), nil
}

// dirPrefix names the temporary directories of private clusters.
const dirPrefix = "synkfs-pgtest-"

// reap stops and removes the private clusters of test processes that no
// longer run.
func reap(bin string, prefix []string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || alive(pid) {
			continue
		}
		argv := append(slices.Clone(prefix), filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = exec.CommandContext(ctx, argv[0], argv[1:]...).Run()
		cancel()
		_ = os.RemoveAll(dir)
	}
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
