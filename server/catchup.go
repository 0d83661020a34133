package server

import (
	"errors"
	"slices"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

var errEnough = errors.New("enough")

// budget is the estimated encoded size one reply may grow to: half the
// message limit, so estimates that run short still fit.
func (c *client) budget() int { return int(c.s.opts.Limits.MaxMessage / 2) }

// estimate is a generous guess of a record's encoded size.
func estimate(k synkfs.Key, body []byte) int {
	return 2*(len(k.Type)+len(k.ID)) + len(body) + 48
}

// sendChanges answers a pull: every record and tombstone newer than from
// (but, under skip-own, those of the client's own acknowledged pushes),
// and the server version, as synk's original server does. A reply over
// the budget is split at version boundaries, each part carrying the
// version it completes, so a client that loses the link half way resumes
// correctly.
//
// A client the store cannot catch up (its version is above the server's,
// or below the compaction floor) gets, if legacy, every live record and the
// current version; an extended client is closed so that its next
// handshake tells it to resync.
func (c *client) sendChanges(from uint64) error {
	st := c.s.store
	// Read before Since: changes above v are left to the next pull. Never
	// below a version this client was told of (a notify, an ack, a
	// reply): the client waits for a reply that reaches it, and a store
	// that cannot read its version now answers the last one it read,
	// while every version told of is committed and Since returns it.
	v := max(st.Version(), c.sent, c.acked)
	if from > v || from < st.Floor() {
		if c.extended {
			c.log.Info("client cannot be caught up: closing it so it resyncs", "version", from, "server", v, "floor", st.Floor())
			c.kill(websocket.StatusGoingAway, "resync required")
			return nil
		}
		return c.sendFullState(v)
	}
	own := c.own.list()
	var parts []*wire.Changes
	msg, size := &wire.Changes{}, 0
	err := st.Since(from, func(ch synkfs.Change) error {
		if ch.Version > v {
			return errEnough
		}
		if !c.mayRead(ch.Key.Type) || (own != nil && slices.Contains(own, ch.Version)) {
			return nil
		}
		n := estimate(ch.Key, ch.Body)
		if size+n > c.budget() && size > 0 {
			// Since is in version order: every change below ch's version
			// is in this part or an earlier one.
			msg.Version = ch.Version - 1
			parts = append(parts, msg)
			msg, size = &wire.Changes{}, 0
		}
		size += n
		if ch.Deleted {
			msg.Delete = append(msg.Delete, ch.Tombstone())
		} else {
			msg.Update = append(msg.Update, ch.Record)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	msg.Version = v
	parts = append(parts, msg)
	for _, p := range parts {
		if err := c.write(p); err != nil {
			return err
		}
	}
	return nil
}

// sendFullState sends a legacy client every live record, in pages, then
// the current version v. The messages before the last carry version 0, so
// a client cut off half way asks for everything again.
func (c *client) sendFullState(v uint64) error {
	var after synkfs.Key
	msg := &wire.Changes{}
	size := 0
	for {
		recs, err := c.s.store.Scan(after, c.s.opts.SnapshotPageMax)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if !c.mayRead(r.Key.Type) {
				continue
			}
			n := estimate(r.Key, r.Body)
			if size+n > c.budget() && size > 0 {
				if err := c.write(msg); err != nil {
					return err
				}
				msg, size = &wire.Changes{}, 0
			}
			msg.Update = append(msg.Update, r)
			size += n
		}
		if len(recs) < c.s.opts.SnapshotPageMax {
			break
		}
		after = recs[len(recs)-1].Key
	}
	msg.Version = v
	return c.write(msg)
}

// sendSnapshotPage answers a snapshot request with up to the requested
// number of records (capped by SnapshotPageMax and the message budget).
func (c *client) sendSnapshotPage(req *wire.SnapshotRequest) error {
	if c.limited() {
		return c.sendFilteredSnapshotPage(req)
	}
	limit := req.Limit
	if limit <= 0 || limit > c.s.opts.SnapshotPageMax {
		limit = c.s.opts.SnapshotPageMax
	}
	var after synkfs.Key
	if req.After != nil {
		after = *req.After
	}
	st := c.s.store
	page := &wire.SnapshotPage{Epoch: st.Epoch(), Version: st.Version(), Total: st.Count()}
	recs, err := st.Scan(after, limit)
	if err != nil {
		return err
	}
	size := 0
	page.Done = len(recs) < limit
	for i, r := range recs {
		n := estimate(r.Key, r.Body)
		if size+n > c.budget() && i > 0 {
			page.Done = false
			break
		}
		size += n
		page.Records = append(page.Records, r)
	}
	if !page.Done && len(page.Records) > 0 {
		next := page.Records[len(page.Records)-1].Key
		page.Next = &next
	}
	return c.write(page)
}
