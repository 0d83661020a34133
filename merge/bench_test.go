package merge

import (
	"encoding/json"
	"testing"
)

// benchRecord is a record body of about 300 bytes, keys out of order.
var benchRecord = []byte(`{
  "name": "Ada Lovelace",
  "email": "ada@example.org",
  "age": 36,
  "active": true,
  "score": 98.5,
  "tags": ["math", "engines", "poetry"],
  "address": {"street": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH"},
  "notes": "Wrote the first program <for> the Analytical Engine & more.",
  "created": "1843-07-10T00:00:00Z"
}`)

func BenchmarkCanonical(b *testing.B) {
	b.SetBytes(int64(len(benchRecord)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonical(benchRecord); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCanonicalBaseline is the obvious alternative: decode into a map
// and encode again (which sorts keys but rounds numbers through float64 and
// lets duplicate keys through).
func BenchmarkCanonicalBaseline(b *testing.B) {
	b.SetBytes(int64(len(benchRecord)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(benchRecord, &m); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	base := benchRecord
	ours := []byte(`{"name":"Ada L.","email":"ada@example.org","age":37,"active":true,"score":98.5,"tags":["math","engines","poetry"],"address":{"street":"12 St James's Square","city":"London","zip":"SW1Y 4JH"},"notes":"Wrote the first program <for> the Analytical Engine & more.","created":"1843-07-10T00:00:00Z"}`)
	theirs := []byte(`{"name":"Ada Lovelace","email":"ada@example.org","age":36,"active":false,"score":98.5,"tags":["math","engines"],"address":{"street":"12 St James's Square","city":"Paris","zip":"SW1Y 4JH"},"notes":"Wrote the first program <for> the Analytical Engine & more.","created":"1843-07-10T00:00:00Z"}`)
	b.SetBytes(int64(len(base)))
	b.ReportAllocs()
	for b.Loop() {
		if _, c, err := Merge(base, ours, theirs); err != nil || len(c) != 0 {
			b.Fatal(err, c)
		}
	}
}
