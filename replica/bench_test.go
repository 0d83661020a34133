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
