package fsstore

// Run: go test ./fsstore -run XXX -bench . -benchtime 1x
// Each benchmark has baselines measured in the same run; compare ns/op.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/merge"
)

const benchRecords = 10_000

func benchRecord(i int) synkfs.Record {
	return synkfs.Record{
		Key:     synkfs.Key{Type: fmt.Sprintf("type%d", i%10), ID: fmt.Sprintf("record-%06d", i)},
		Version: uint64(i + 1),
		Body:    []byte(fmt.Sprintf(`{"name":"record %d","count":%d,"tags":["a","b"],"done":false}`, i, i)),
	}
}

// writeDirect is the baseline: the same files written with temp file and
// rename, optionally with an fsync per file, without a journal or index.
func writeDirect(b *testing.B, root string, recs []synkfs.Record, fsync bool) {
	for _, r := range recs {
		rel, err := KeyPath(r.Key)
		if err != nil {
			b.Fatal(err)
		}
		data, err := merge.Pretty(r.Body)
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(root, rel)
		dir := filepath.Dir(path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.CreateTemp(dir, tempPattern)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			b.Fatal(err)
		}
		if fsync {
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
		if err := os.Rename(f.Name(), path); err != nil {
			b.Fatal(err)
		}
	}
}

func benchApply(b *testing.B, perBatch int) {
	recs := make([]synkfs.Record, benchRecords)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	b.Run("fsstore", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			s, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for i := 0; i < len(recs); i += perBatch {
				batch := synkfs.Batch{Version: uint64(i + perBatch), Puts: recs[i : i+perBatch]}
				if err := s.Apply(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			s.Close()
		}
	})
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("baseline-rename-fsync=%v", fsync), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				root := b.TempDir()
				b.StartTimer()
				writeDirect(b, root, recs, fsync)
			}
		})
	}
}

// BenchmarkApplySingle applies 10,000 batches of one record each.
func BenchmarkApplySingle(b *testing.B) { benchApply(b, 1) }

// BenchmarkApplyBatch applies one batch of 10,000 records.
func BenchmarkApplyBatch(b *testing.B) { benchApply(b, benchRecords) }

// BenchmarkOpen100k opens a store of 100,000 records; the baseline lists
// the same tree (ReadDir of every folder, no file read).
func BenchmarkOpen100k(b *testing.B) {
	const n = 100_000
	root := b.TempDir()
	s, err := Open(root, &Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	batch := synkfs.Batch{Version: n}
	for i := range n {
		batch.Puts = append(batch.Puts, benchRecord(i))
	}
	if err := s.Apply(context.Background(), batch); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Run("fsstore", func(b *testing.B) {
		for range b.N {
			s, err := Open(root, nil)
			if err != nil {
				b.Fatal(err)
			}
			if s.Count() != n {
				b.Fatalf("count %d", s.Count())
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	})
	b.Run("baseline-list-tree", func(b *testing.B) {
		for range b.N {
			count := 0
			tops, err := os.ReadDir(root)
			if err != nil {
				b.Fatal(err)
			}
			for _, t := range tops {
				if t.IsDir() && t.Name() != StateDir {
					ents, err := os.ReadDir(filepath.Join(root, t.Name()))
					if err != nil {
						b.Fatal(err)
					}
					count += len(ents)
				}
			}
			if count != n {
				b.Fatalf("listed %d", count)
			}
		}
	})
}

// BenchmarkApplyGuarded overwrites 2,000 records in batches of 100 with
// Guard, as a replica applies the server's changes: each put swaps its
// file in and reads the one that came out. The baseline applies the same
// batches without Guard (a look-free rename per put). NoSync, so the
// file operations are measured, not the journal's fsync.
func BenchmarkApplyGuarded(b *testing.B) {
	const n, per = 2000, 100
	for _, guard := range []bool{true, false} {
		name := "guarded"
		if !guard {
			name = "baseline-unguarded"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s, err := Open(b.TempDir(), &Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				recs := make([]synkfs.Record, n)
				for i := range recs {
					recs[i] = benchRecord(i)
					recs[i].Version = 1
				}
				if err := s.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: recs}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for i := 0; i < n; i += per {
					batch := synkfs.Batch{Version: uint64(2 + i)}
					for _, r := range recs[i : i+per] {
						r.Version = batch.Version
						r.Body = []byte(fmt.Sprintf(`{"name":"edited %d"}`, i))
						batch.Puts = append(batch.Puts, r)
					}
					if err := s.ApplyWith(context.Background(), batch, ApplyOptions{Guard: guard}); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				s.Close()
			}
		})
	}
}
