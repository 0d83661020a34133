package wire

// PeekBatch returns the batch id of a changes message, reading only the
// top-level members of data, or 0 when data is not a changes message with
// a batch id. It tolerates what Decode refuses (a message over the limits,
// a record of the wrong shape), so a refusal can name the batch it
// refuses. It never fails and never builds values.
func PeekBatch(data []byte) uint64 {
	var batch uint64
	changes := false
	eachMember(data, func(key, val []byte) {
		switch string(key) {
		case `"type"`:
			s, _ := unquote(val)
			changes = s == TypeChanges
		case `"batch"`:
			batch, _ = parseUint(val)
		}
	})
	if !changes {
		return 0
	}
	return batch
}
