package replica

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

// BenchmarkSaveToReplica measures the time from a save in one running
// replica's folder to the new content in another's, on loopback; it
// reports the median and 95th percentile. The baseline does the same file
// work without syncing: write in one folder, read, write in the other.
func BenchmarkSaveToReplica(b *testing.B) {
	srv := newServer(b)
	a, c := newSide(b, srv.url, nil), newSide(b, srv.url, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = a.r.Run(ctx, a.c); done <- struct{}{} }()
	go func() { _ = c.r.Run(ctx, c.c); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	var lat []time.Duration
	target := filepath.Join(c.dir, "bench", "r.json")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		body := fmt.Sprintf("{\n  \"i\": %d\n}\n", i)
		start := time.Now()
		if err := os.MkdirAll(filepath.Join(a.dir, "bench"), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(a.dir, "bench", "r.json"), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
		for {
			data, _ := os.ReadFile(target)
			if string(data) == body {
				break
			}
			if time.Since(start) > 10*time.Second {
				da, _ := os.ReadFile(filepath.Join(a.dir, "bench", "r.json"))
				dc, _ := os.ReadFile(target)
				ca, _ := a.r.store.Lookup(synkfs.Key{Type: "bench", ID: "r"})
				cc, _ := c.r.store.Lookup(synkfs.Key{Type: "bench", ID: "r"})
				b.Fatalf("change %d did not arrive: a %q (%+v, staged %d) c %q (%+v staged %d) cursor a %v c %v", i, da, ca, a.r.Pending(), dc, cc, c.r.Pending(), a.r.st.Version, c.r.st.Version)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

func BenchmarkSaveToReplicaBaseline(b *testing.B) {
	dirA, dirB := b.TempDir(), b.TempDir()
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		body := fmt.Sprintf("{\n  \"i\": %d\n}\n", i)
		start := time.Now()
		pa, pb := filepath.Join(dirA, "r.json"), filepath.Join(dirB, "r.json")
		if err := os.WriteFile(pa, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
		data, err := os.ReadFile(pa)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(pb+".tmp", data, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(pb+".tmp", pb); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkInitialSync10k measures an initial sync of 10,000 records of
// about 300 bytes into an empty folder (snapshot walk). The baseline
// copies the same tree file by file, as cp -r would.
func BenchmarkInitialSync10k(b *testing.B) {
	const n = 10_000
	srv := newServer(b)
	src := newSide(b, srv.url, nil)
	writeTree(b, src.dir, n)
	src.sync()
	b.ResetTimer()
	for b.Loop() {
		dst := newSide(b, srv.url, nil)
		dst.sync()
		b.StopTimer()
		if got := dst.r.store.Count(); got != n {
			b.Fatalf("synced %d records, want %d", got, n)
		}
		_ = dst.r.Close()
		b.StartTimer()
	}
	b.ReportMetric(n, "records")
}

func BenchmarkInitialSync10kBaseline(b *testing.B) {
	const n = 10_000
	src := b.TempDir()
	writeTree(b, src, n)
	b.ResetTimer()
	for b.Loop() {
		dst := b.TempDir()
		ents, _ := os.ReadDir(filepath.Join(src, "t"))
		if err := os.MkdirAll(filepath.Join(dst, "t"), 0o755); err != nil {
			b.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(src, "t", e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, "t", e.Name()), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(n, "records")
}

func writeTree(b *testing.B, dir string, n int) {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "t"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		body := fmt.Sprintf("{\n  \"i\": %d,\n  \"name\": \"record number %d\",\n  \"text\": \"%0240d\"\n}\n", i, i, i)
		if err := os.WriteFile(filepath.Join(dir, "t", fmt.Sprintf("%d.json", i)), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
