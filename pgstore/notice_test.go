package pgstore

import "testing"

// FuzzNotice: parseNotice reads back what notice writes, and whatever it
// accepts it writes back byte for byte.
func FuzzNotice(f *testing.F) {
	f.Add("12 a1b2c3")
	f.Add("0 x")
	f.Add("18446744073709551615 ff")
	f.Add("012 x")
	f.Add("12")
	f.Add(" x")
	f.Add("-1 x")
	f.Fuzz(func(t *testing.T, payload string) {
		v, inst, ok := parseNotice(payload)
		if !ok {
			return
		}
		if got := notice(v, inst); got != payload {
			t.Fatalf("parseNotice(%q) = %d %q, written back as %q", payload, v, inst, got)
		}
		v2, inst2, ok := parseNotice(notice(v, inst))
		if !ok || v2 != v || inst2 != inst {
			t.Fatalf("round trip of %d %q = %d %q %v", v, inst, v2, inst2, ok)
		}
	})
}
