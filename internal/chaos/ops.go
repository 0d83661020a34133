package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
)

// The key space is small on purpose: replicas keep touching the same
// records, which is where conflicts, resurrections and lost edits hide.
var (
	types   = []string{"note", "task"}
	idCount = 10
	bulkIDs = 60
	fields  = []string{"a", "b", "c", "d"}
)

// Every random draw of a step happens whatever the folders hold, so the
// same seed makes the same schedule; what an operation finds on disk only
// decides whether it edits or creates, and whether a delete or rename has
// anything to do.
func (c *cluster) userOp() {
	n := c.nodes[c.rng.IntN(len(c.nodes))]
	k := synkfs.Key{Type: types[c.rng.IntN(len(types))], ID: fmt.Sprint(c.rng.IntN(idCount))}
	switch x := c.rng.IntN(100); {
	case x < 45:
		c.write(n, k, c.pickFields(), c.rng.IntN(6))
	case x < 60:
		c.remove(n, k)
	case x < 70:
		to := synkfs.Key{Type: types[c.rng.IntN(len(types))], ID: fmt.Sprint(c.rng.IntN(idCount))}
		c.rename(n, k, to)
	case x < 88:
		// The same record edited on several replicas at once.
		count := 2 + c.rng.IntN(2)
		perm := c.rng.Perm(len(c.nodes))
		c.rep.Ops["concurrent-edit"]++
		for _, i := range perm[:min(count, len(perm))] {
			c.write(c.nodes[i], k, c.pickFields(), 0)
		}
	case x < 95:
		// A bulk change: many records at once.
		count := 10 + c.rng.IntN(40)
		del := c.rng.IntN(4) == 0
		c.rep.Ops["bulk"]++
		for range count {
			bk := synkfs.Key{Type: "bulk", ID: fmt.Sprint(c.rng.IntN(bulkIDs))}
			if del {
				c.remove(n, bk)
			} else {
				c.write(n, bk, c.pickFields(), 0)
			}
		}
	case x < 97:
		// A long offline period for one replica (in steps).
		n.relay.SetDown(true)
		n.until["offline"] = c.step + 30 + c.rng.IntN(100)
		c.rep.Faults["offline-long"]++
	default:
		c.write(n, k, c.pickFields(), c.rng.IntN(6))
	}
}

func (c *cluster) pickFields() []string {
	perm := c.rng.Perm(len(fields))
	out := make([]string, 1+c.rng.IntN(2))
	for i := range out {
		out[i] = fields[perm[i]]
	}
	return out
}

// path is where n's user edits k: the folder, or the mountpoint of a
// mount replica.
func (n *node) path(k synkfs.Key) string {
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		panic(err) // the harness's keys are plain
	}
	base := n.dir
	if n.mount {
		base = n.mnt
	}
	return filepath.Join(base, filepath.FromSlash(rel))
}

// editable reports whether n's user can edit now: a mount replica's
// records are there only while its process runs.
func (n *node) editable() bool { return !n.mount || n.running }

// readBody returns the record file's fields, nil if missing or invalid.
func readBody(p string) map[string]any {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

// supersede marks the values n wrote into k that the file still holds and
// that its user now overwrites (fields) or deletes (all: fields nil).
func (c *cluster) supersede(n *node, k synkfs.Key, cur map[string]any, fields []string) {
	c.valMu.Lock()
	defer c.valMu.Unlock()
	for f, v := range cur {
		s, ok := v.(string)
		if !ok {
			continue
		}
		w := c.vals[s]
		if w == nil || w.node != n.i || w.key != k || w.field != f {
			continue
		}
		if fields == nil || contains(fields, f) {
			w.superseded = true
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// write sets fields of k in n's folder to fresh values, as an editor
// would: mode 0-3 write a temporary file and rename it, 4 rewrites the
// file in place, 5 writes half, pauses, then the rest (a slow save).
func (c *cluster) write(n *node, k synkfs.Key, fs []string, mode int) {
	if !n.editable() {
		return
	}
	p := n.path(k)
	cur := readBody(p)
	kind := "edit"
	if cur == nil {
		kind = "create"
		cur = map[string]any{}
	}
	c.supersede(n, k, cur, fs)
	c.valMu.Lock()
	for _, f := range fs {
		c.nextVal++
		v := fmt.Sprintf("%s.%d", n.name, c.nextVal)
		cur[f] = v
		c.vals[v] = &written{node: n.i, key: k, field: f}
	}
	c.valMu.Unlock()
	data, _ := json.MarshalIndent(cur, "", "  ")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.failf("write %s: %v", p, err)
		return
	}
	var err error
	switch {
	case mode == 4:
		err = writeInPlace(p, data, n.mount)
		kind += "-in-place"
	case mode == 5 && c.cfg.SlowSaves:
		err = slowWrite(p, data, n.mount)
		kind += "-slow"
	default:
		tmp := p + ".tmp~"
		if err = os.WriteFile(tmp, data, 0o644); err == nil {
			err = os.Rename(tmp, p)
		}
	}
	if err != nil {
		c.failf("write %s: %v", p, err)
		return
	}
	c.rep.Ops[kind]++
	compact, _ := json.Marshal(cur)
	c.trace("%s %s %s %s", n.name, kind, k.Path(), compact)
}

// writeInPlace rewrites p with data; sync: and fsyncs it, as vim and
// emacs do (through a mount, an fsync is what makes the save a version
// at once; an unsynced write waits for the mount's save delay, and kill
// -9 of the mount process loses it meanwhile, by design).
func writeInPlace(p string, data []byte, sync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// slowWrite writes data to p in two halves with a pause between: a save
// the watcher may see half done. sync: fsync at the end (see
// writeInPlace).
func slowWrite(p string, data []byte, sync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		f.Close()
		return err
	}
	time.Sleep(25 * time.Millisecond)
	if _, err := f.Write(data[half:]); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// remove deletes k's file in n's folder, if it is there.
func (c *cluster) remove(n *node, k synkfs.Key) {
	if !n.editable() {
		return
	}
	p := n.path(k)
	cur := readBody(p)
	if _, err := os.Lstat(p); err != nil {
		return
	}
	c.supersede(n, k, cur, nil)
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		c.failf("remove %s: %v", p, err)
		return
	}
	c.rep.Ops["delete"]++
	c.trace("%s delete %s", n.name, k.Path())
}

// rename moves k's file to to's path (within or between type folders),
// when k exists and to does not.
func (c *cluster) rename(n *node, k, to synkfs.Key) {
	from, dst := n.path(k), n.path(to)
	if k == to || !n.editable() {
		return
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return
	}
	if _, err := os.Lstat(dst); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		c.failf("rename: %v", err)
		return
	}
	c.hist.AllowMove(to, data)
	if err := os.Rename(from, dst); err != nil {
		c.failf("rename %s: %v", from, err)
		return
	}
	c.valMu.Lock()
	if cur := readBodyBytes(data); cur != nil {
		for f, v := range cur {
			if s, ok := v.(string); ok {
				if w := c.vals[s]; w != nil && w.node == n.i && w.key == k && w.field == f {
					w.key = to
				}
			}
		}
	}
	c.valMu.Unlock()
	c.trace("%s rename %s %s", n.name, k.Path(), to.Path())
	if k.Type == to.Type {
		c.rep.Ops["rename-within-type"]++
	} else {
		c.rep.Ops["rename-between-types"]++
	}
}

func readBodyBytes(data []byte) map[string]any {
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}
