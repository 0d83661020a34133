package replica

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

// Benchmarks of issue 4, each beside a baseline from the same run:
//
//	go test ./replica -run '^$' -bench 'InitialSyncTree|EditBurst' -benchtime 1x
//
// The 100,000-record case runs only with SYNKFS_BENCH_100K=1. Trees are
// made in the default temporary folder (TMPDIR), fresh for each run.

// initialSizes are the tree sizes of the initial sync benchmarks.
func initialSizes(b *testing.B) []int {
	sizes := []int{10_000}
	if os.Getenv("SYNKFS_BENCH_100K") == "1" {
		sizes = append(sizes, 100_000)
	}
	return sizes
}

// syncWithin is side.sync with a longer time limit, for large trees.
func syncWithin(b *testing.B, s *side, d time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.r.SyncOnce(ctx, s.c); err != nil {
		b.Fatalf("sync %s: %v", s.dir, err)
	}
}

// serverBytes returns the server's payload bytes in and out so far, from
// its /metrics page.
func serverBytes(b *testing.B, srv *testServer) (in, out float64) {
	b.Helper()
	resp, err := http.Get(srv.hs.URL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "synkfs_bytes_in_total":
			in = v
		case "synkfs_bytes_out_total":
			out = v
		}
	}
	return in, out
}

// rawSize is the size of the records under dir as flat wire JSON.
func rawSize(b *testing.B, s *side) float64 {
	b.Helper()
	total := 0
	var after synkfs.Key
	for {
		recs, err := s.r.store.Scan(after, 1000)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			data, err := json.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			total += len(data)
		}
		if len(recs) < 1000 {
			return float64(total)
		}
		after = recs[len(recs)-1].Key
	}
}

// BenchmarkInitialSyncTree: an initial sync of n records of about 300
// bytes from the server into an empty folder, and the bytes the server
// sent for it against the records' raw JSON size.
func BenchmarkInitialSyncTree(b *testing.B) {
	for _, n := range initialSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			srv := newServer(b)
			src := newSide(b, srv.url, nil)
			writeRandomTree(b, src.dir, n)
			syncWithin(b, src, 5*time.Minute)
			raw := rawSize(b, src)
			var sent float64
			for b.Loop() {
				b.StopTimer()
				dst := newSide(b, srv.url, nil)
				_, out0 := serverBytes(b, srv)
				b.StartTimer()
				syncWithin(b, dst, 5*time.Minute)
				b.StopTimer()
				_, out1 := serverBytes(b, srv)
				sent = out1 - out0
				if got := dst.r.store.Count(); got != n {
					b.Fatalf("synced %d records, want %d", got, n)
				}
				_ = dst.r.Close()
				b.StartTimer()
			}
			b.ReportMetric(sent/raw, "wire/raw")
		})
	}
}

// BenchmarkInitialSyncTreeBaseline copies the same tree with cp -r.
func BenchmarkInitialSyncTreeBaseline(b *testing.B) {
	if _, err := exec.LookPath("cp"); err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatal("cp not found")
		}
		b.Skip("cp not found")
	}
	for _, n := range initialSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			src := b.TempDir()
			writeRandomTree(b, src, n)
			for b.Loop() {
				b.StopTimer()
				dst := filepath.Join(b.TempDir(), "copy")
				b.StartTimer()
				if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
					b.Fatalf("cp: %v: %s", err, out)
				}
			}
		})
	}
}

// BenchmarkEditBurst: 1,000 records edited at once in one running
// replica's folder; the time until the other running replica has all of
// them, and the bytes the server took in and sent out for them against
// their raw JSON size.
func BenchmarkEditBurst(b *testing.B) {
	const n = 1000
	srv := newServer(b)
	a, c := newSide(b, srv.url, nil), newSide(b, srv.url, nil)
	writeRandomTree(b, a.dir, n)
	a.sync()
	c.sync()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*side{a, c} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.r.Run(ctx, s.c) }()
	}
	defer func() { cancel(); wg.Wait() }()
	var inRatio, outRatio float64
	for round := 0; b.Loop(); round++ {
		b.StopTimer()
		in0, out0 := serverBytes(b, srv)
		bodies := burstBodies(n, round)
		b.StartTimer()
		for i, body := range bodies {
			if err := os.WriteFile(filepath.Join(a.dir, "t", fmt.Sprintf("%d.json", i)), []byte(body), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < n; {
			data, _ := os.ReadFile(filepath.Join(c.dir, "t", fmt.Sprintf("%d.json", i)))
			if strings.Contains(string(data), fmt.Sprintf("\"round\": %d,", round)) {
				i++
				continue
			}
			if time.Now().After(deadline) {
				b.Fatalf("round %d: record %d did not arrive", round, i)
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		time.Sleep(50 * time.Millisecond) // let the acks and notifies finish
		in1, out1 := serverBytes(b, srv)
		raw := 0
		for i, body := range bodies {
			r := synkfs.Record{Key: synkfs.Key{Type: "t", ID: strconv.Itoa(i)}, Version: 1, Body: []byte(body)}
			data, _ := json.Marshal(r)
			raw += len(data)
		}
		inRatio, outRatio = (in1-in0)/float64(raw), (out1-out0)/float64(raw)
		b.StartTimer()
	}
	b.ReportMetric(inRatio, "wire-in/raw")
	b.ReportMetric(outRatio, "wire-out/raw")
}

// BenchmarkEditBurstBaseline writes the same 1,000 files natively.
func BenchmarkEditBurstBaseline(b *testing.B) {
	const n = 1000
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "t"), 0o755); err != nil {
		b.Fatal(err)
	}
	for round := 0; b.Loop(); round++ {
		b.StopTimer()
		bodies := burstBodies(n, round)
		b.StartTimer()
		for i, body := range bodies {
			if err := os.WriteFile(filepath.Join(dir, "t", fmt.Sprintf("%d.json", i)), []byte(body), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// burstBodies returns n record bodies of about 300 bytes for a round,
// with text that compresses about as well as prose (hex digits of a
// hash), not runs of one byte.
func burstBodies(n, round int) []string {
	out := make([]string, n)
	for i := range out {
		var text string
		for j := 0; len(text) < 220; j++ {
			h := sha256.Sum256([]byte(fmt.Sprintf("%d/%d/%d", round, i, j)))
			text += hex.EncodeToString(h[:])
		}
		text = text[:220]
		out[i] = fmt.Sprintf("{\n  \"round\": %d,\n  \"i\": %d,\n  \"text\": \"%s\"\n}\n", round, i, text)
	}
	return out
}

// writeRandomTree writes n records of about 300 bytes as <dir>/t/<i>.json.
func writeRandomTree(b *testing.B, dir string, n int) {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "t"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i, body := range burstBodies(n, -1) {
		if err := os.WriteFile(filepath.Join(dir, "t", fmt.Sprintf("%d.json", i)), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
