package merge

import (
	"bytes"
	"fmt"
	"io"
	"text/tabwriter"
	"unicode/utf8"
)

// maxCell is the most runes of a value FormatDiff prints; longer values are
// cut and end in "...".
const maxCell = 40

// FormatDiff writes diffs as an aligned text table, one field a line, naming
// our side "local" and theirs "server" as the replica uses them:
//
//	name  base: "Ada"  local: "Ada L."  server: "Ada S."  CONFLICT
//	age   base: 36     local: 37        server: 36        local
//
// The last column says which side the field changed on: local, server, both
// (to the same value), CONFLICT, or nothing when it is unchanged. An absent
// value is written "-". It returns the first write error.
func FormatDiff(w io.Writer, diffs []FieldDiff) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, d := range diffs {
		fmt.Fprintf(tw, "  %s\tbase: %s\tlocal: %s\tserver: %s\t%s\n",
			PathString(d.Path), cell(d.Base), cell(d.Ours), cell(d.Theirs), label(d.Kind))
	}
	tw.Flush() // writes to memory: cannot fail
	var out []byte
	for line := range bytes.Lines(buf.Bytes()) {
		out = append(append(out, bytes.TrimRight(line, " \n")...), '\n')
	}
	_, err := w.Write(out)
	return err
}

func label(k Kind) string {
	switch k {
	case ChangedOurs:
		return "local"
	case ChangedTheirs:
		return "server"
	case ChangedBoth:
		return "both"
	case Conflicting:
		return "CONFLICT"
	}
	return ""
}

// cell shortens a value for the table. Canonical values hold no tabs or
// newlines outside escapes, so they cannot break the columns.
func cell(raw []byte) string {
	if raw == nil {
		return "-"
	}
	if utf8.RuneCount(raw) <= maxCell {
		return string(raw)
	}
	n := 0
	for i := range string(raw) {
		if n == maxCell-3 {
			return string(raw[:i]) + "..."
		}
		n++
	}
	return string(raw)
}
