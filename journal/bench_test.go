package journal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// benchEntry is the payload size used by the benchmarks, about one small
// JSON record with its metadata.
const benchEntry = 128

// BenchmarkBaselineWriteFsync is the floor for a durable append without
// group commit: one write and one fsync of an encoded entry on a plain
// os.File.
func BenchmarkBaselineWriteFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := appendEntry(nil, 1, make([]byte, benchEntry))
	b.SetBytes(benchEntry)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchJournal(b *testing.B) *Journal {
	j, err := Open(b.TempDir(), &Options{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { j.Close() })
	return j
}

// BenchmarkAppendSerial appends from one goroutine: every append is its
// own group, so this should be close to the baseline.
func BenchmarkAppendSerial(b *testing.B) {
	j := benchJournal(b)
	data := make([]byte, benchEntry)
	ctx := context.Background()
	b.SetBytes(benchEntry)
	start := j.nsyncs.Load()
	for b.Loop() {
		if _, err := j.Append(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(j.nsyncs.Load()-start)/float64(b.N), "fsyncs/op")
}

// BenchmarkAppendParallel appends from 32 goroutines per CPU; group
// commit should share each fsync among many of them.
func BenchmarkAppendParallel(b *testing.B) {
	j := benchJournal(b)
	ctx := context.Background()
	b.SetBytes(benchEntry)
	b.SetParallelism(32)
	start := j.nsyncs.Load()
	b.RunParallel(func(pb *testing.PB) {
		data := make([]byte, benchEntry)
		for pb.Next() {
			if _, err := j.Append(ctx, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(j.nsyncs.Load()-start)/float64(b.N), "fsyncs/op")
}
