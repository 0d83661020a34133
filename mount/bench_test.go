package mount_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/mount"
)

// The benchmarks compare three views of the same 10,000 record files: the
// native folder (the store's tree), a plain go-fuse loopback mount of it,
// and the synkfs mount over the store, each mount served by its own
// process. Run them with:
//
//	go test ./mount -run '^$' -bench 'StatWarm|ReadWarm' -benchtime 20000x
//	go test ./mount -run '^$' -bench 'ReaddirWarm' -benchtime 50x
//	go test ./mount -run '^$' -bench 'Cold|LsL' -benchtime 3x
//	go test ./mount -run '^$' -bench 'Create' -benchtime 10000x
//
// Cold variants drop the kernel's caches (/proc/sys/vm/drop_caches)
// before each pass over the folder and report ns per file; warm variants
// report ns per operation once the caches are full. BenchmarkCreate also
// reports saved-ns/op: until the synkfs mount saved every file. Set
// SYNKFS_BENCH_SYNC=1 to let the synkfs store fsync its journal as it does
// in use (the default skips fsync, as the native and loopback writes do).

const benchRecords = 10000

type benchEnv struct {
	dir   string
	views []benchView
	stops []func() error
}

type benchView struct {
	name string // native, loopback, synkfs
	dir  string // the folder of 10,000 records
	root string // where new type folders may be made
}

var (
	benchOnce sync.Once
	bench     *benchEnv
	benchErr  error
)

// setupBench builds the store and mounts once per test binary run.
func setupBench(b *testing.B) *benchEnv {
	b.Helper()
	needFUSE(b)
	benchOnce.Do(func() { bench, benchErr = newBenchEnv() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

func newBenchEnv() (*benchEnv, error) {
	dir, err := os.MkdirTemp("", "synkfs-bench-")
	if err != nil {
		return nil, err
	}
	e := &benchEnv{dir: dir}
	state := filepath.Join(dir, "state")
	st, err := fsstore.Open(state, &fsstore.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	batch := synkfs.Batch{Version: 1}
	for i := range benchRecords {
		body := fmt.Sprintf(`{"title":"record %d","done":false,"tags":["a","b"],"n":%d,"text":"some words to make it about the size of a small record"}`, i, i)
		batch.Puts = append(batch.Puts, synkfs.Record{Key: synkfs.Key{Type: "bench", ID: "r" + strconv.Itoa(i)}, Version: 1, Body: []byte(body)})
	}
	if err := st.Apply(context.Background(), batch); err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	e.views = append(e.views, benchView{"native", filepath.Join(state, "bench"), state})

	// The loopback serves the same tree, as the synkfs mount does.
	for _, v := range []struct{ kind, name, src string }{{"loopback", "loopback", state}, {"store", "synkfs", state}} {
		mnt := filepath.Join(dir, v.name)
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return nil, err
		}
		// The mount saves as a user's would: after the default delay.
		env := []string{childSaveEnv + "=" + mount.DefaultSaveDelay.String()}
		if os.Getenv("SYNKFS_BENCH_SYNC") != "" {
			env = append(env, childSyncEnv+"=1")
		}
		c, err := spawnChild(v.kind, v.src, mnt, env...)
		if err != nil {
			return nil, err
		}
		e.stops = append(e.stops, c.stop)
		e.views = append(e.views, benchView{v.name, filepath.Join(mnt, "bench"), mnt})
	}
	return e, nil
}

func (e *benchEnv) close() {
	for _, stop := range e.stops {
		_ = stop()
	}
	_ = os.RemoveAll(e.dir)
}

// dropCaches empties the kernel's dentry and inode caches (level "2") or
// those and the page cache ("3").
func dropCaches(b *testing.B, level string) {
	b.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte(level), 0o200); err != nil {
		b.Skipf("cannot drop caches: %v", err)
	}
}

func name(i int) string { return "r" + strconv.Itoa(i%benchRecords) + ".json" }

func statOne(b *testing.B, dir string, i int) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, name(i)), &st); err != nil {
		b.Fatal(err)
	}
}

var readBuf = make([]byte, 64<<10)

func readOne(b *testing.B, dir string, i int) {
	fd, err := syscall.Open(filepath.Join(dir, name(i)), syscall.O_RDONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	if n, err := syscall.Read(fd, readBuf); err != nil || n == 0 {
		b.Fatalf("read: %d, %v", n, err)
	}
	syscall.Close(fd)
}

func readdir(b *testing.B, dir string, withStat bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	if len(ents) != benchRecords {
		b.Fatalf("%s lists %d entries, want %d", dir, len(ents), benchRecords)
	}
	if withStat {
		for _, e := range ents {
			if _, err := e.Info(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// perFile runs pass over the whole folder once per iteration, dropping
// caches first, and reports the time per file.
func perFile(b *testing.B, level string, pass func()) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dropCaches(b, level)
		b.StartTimer()
		t0 := time.Now()
		pass()
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*benchRecords), "ns/file")
}

func forEachView(b *testing.B, fn func(b *testing.B, v benchView)) {
	e := setupBench(b)
	for _, v := range e.views {
		b.Run(v.name, func(b *testing.B) { fn(b, v) })
	}
}

func BenchmarkStatCold(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		perFile(b, "2", func() {
			for i := range benchRecords {
				statOne(b, v.dir, i)
			}
		})
	})
}

func BenchmarkStatWarm(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		for i := range benchRecords {
			statOne(b, v.dir, i)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			statOne(b, v.dir, i)
		}
	})
}

func BenchmarkReadCold(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		perFile(b, "3", func() {
			for i := range benchRecords {
				readOne(b, v.dir, i)
			}
		})
	})
}

func BenchmarkReadWarm(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		for i := range benchRecords {
			readOne(b, v.dir, i)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			readOne(b, v.dir, i)
		}
	})
}

func BenchmarkReaddirCold(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		perFile(b, "2", func() { readdir(b, v.dir, false) })
	})
}

func BenchmarkReaddirWarm(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		readdir(b, v.dir, false)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			readdir(b, v.dir, false)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRecords), "ns/file")
	})
}

// BenchmarkLsL is `ls -l` of the folder: list it, then stat each entry,
// with cold caches.
func BenchmarkLsL(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		perFile(b, "2", func() { readdir(b, v.dir, true) })
	})
}

var createRun int

// BenchmarkCreate creates and writes one new record per iteration (run
// with -benchtime 10000x for the 10,000 records), in a new type folder.
func BenchmarkCreate(b *testing.B) {
	forEachView(b, func(b *testing.B, v benchView) {
		createRun++
		dir := filepath.Join(v.root, fmt.Sprintf("new%d", createRun))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		body := []byte(`{"title":"a new record","done":false,"n":1}` + "\n")
		b.ResetTimer()
		t0 := time.Now()
		for i := 0; i < b.N; i++ {
			fd, err := syscall.Open(filepath.Join(dir, "c"+strconv.Itoa(i)+".json"), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := syscall.Write(fd, body); err != nil {
				b.Fatal(err)
			}
			if err := syscall.Close(fd); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		// synkfs saves once a file is quiet (see the package comment):
		// saved-ns/op counts until the last save, the delay included.
		if v.name == "synkfs" {
			waitSaved(b, v.root)
		}
		b.ReportMetric(float64(time.Since(t0).Nanoseconds())/float64(b.N), "saved-ns/op")
	})
}

// waitSaved waits until the mount at mnt lists nothing unsaved.
func waitSaved(b *testing.B, mnt string) {
	deadline := time.Now().Add(time.Minute)
	for {
		data, err := os.ReadFile(filepath.Join(mnt, ".synk", "status.json"))
		if err != nil {
			b.Fatal(err)
		}
		var st struct {
			Unsaved []string `json:"unsaved"`
		}
		if err := json.Unmarshal(data, &st); err != nil {
			b.Fatal(err)
		}
		if len(st.Unsaved) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d files still unsaved after a minute", len(st.Unsaved))
		}
		time.Sleep(time.Millisecond)
	}
}
