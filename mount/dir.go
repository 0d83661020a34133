package mount

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"golang.org/x/sys/unix"
)

// synkName is the read-only status folder at the root.
const synkName = ".synk"

// recentTTL is how long the attributes a Readdir read serve the lookups
// that follow it (the kernel looks up every entry of a READDIRPLUS).
const recentTTL = time.Second

// dirNode is the root (typ == "") or a type folder.
type dirNode struct {
	fs.Inode
	srv *Server
	typ string

	// mu guards the maps; see Server.nsMu for the lock order.
	mu sync.Mutex
	// locals are the names held only in the mount: editor files,
	// symlinks, and created record files not saved yet.
	locals map[string]*file
	// hidden are record names renamed away, whose delete waits.
	hidden map[string]*time.Timer
	// recent holds the attributes of the last listing, briefly.
	recent   map[string]FileInfo
	recentAt time.Time
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeSymlinker = (*dirNode)(nil)
	_ fs.NodeSetattrer = (*dirNode)(nil)
)

func (d *dirNode) isRoot() bool { return d == d.srv.root }

// recordKey returns the key of the record file name in d, if name is one.
func (d *dirNode) recordKey(name string) (synkfs.Key, bool) {
	if d.isRoot() {
		return synkfs.Key{}, false
	}
	rel := fsstore.EscapeName(d.typ) + "/" + name
	if d.srv.opts.Matcher.IsIgnored(rel) {
		return synkfs.Key{}, false
	}
	k, err := fsstore.PathKey(rel)
	if err != nil {
		return synkfs.Key{}, false
	}
	return k, true
}

// typeName returns the type a root folder name stands for.
func typeName(name string) (string, bool) {
	if name == "" || name[0] == '.' {
		return "", false
	}
	t, err := fsstore.UnescapeName(name)
	return t, err == nil
}

func (d *dirNode) dirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Nlink = 2
	t := d.srv.started
	a.SetTimes(&t, &t, &t)
}

func (d *dirNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.dirAttr(&out.Attr)
	return 0
}

// Setattr accepts chmod, chown and utimens on folders and keeps nothing.
func (d *dirNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	d.dirAttr(&out.Attr)
	out.Ino = d.StableAttr().Ino // see fileNode.Setattr
	return 0
}

func (d *dirNode) typeDir(ctx context.Context, typ string) *fs.Inode {
	name := fsstore.EscapeName(typ)
	if ch := d.GetChild(name); ch != nil {
		if td, ok := ch.Operations().(*dirNode); ok && td.typ == typ {
			return ch
		}
	}
	td := &dirNode{srv: d.srv, typ: typ, locals: map[string]*file{}, hidden: map[string]*time.Timer{}}
	return d.NewInode(ctx, td, fs.StableAttr{Mode: syscall.S_IFDIR})
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d.mu.Lock()
	if f := d.locals[name]; f != nil {
		d.mu.Unlock()
		return f.inode(ctx, d, &out.Attr), 0
	}
	if _, ok := d.hidden[name]; ok {
		d.mu.Unlock()
		return nil, syscall.ENOENT
	}
	info, fromList := d.recent[name]
	if time.Since(d.recentAt) > recentTTL {
		fromList = false
	}
	d.mu.Unlock()

	if d.isRoot() {
		if name == synkName {
			ch := d.GetChild(name)
			if ch == nil {
				ch = d.NewInode(ctx, &synkDir{srv: d.srv}, fs.StableAttr{Mode: syscall.S_IFDIR})
			}
			d.dirAttr(&out.Attr)
			return ch, 0
		}
		typ, ok := typeName(name)
		if !ok {
			return nil, syscall.ENOENT
		}
		types, err := d.srv.b.Types()
		if err != nil {
			return nil, errno(d.srv.log, "lookup", err)
		}
		for _, t := range types {
			if t == typ {
				d.dirAttr(&out.Attr)
				return d.typeDir(ctx, typ), 0
			}
		}
		return nil, syscall.ENOENT
	}

	k, ok := d.recordKey(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	if !fromList {
		var err error
		if info, err = d.srv.b.Stat(k); err != nil {
			return nil, errno(d.srv.log, "lookup", err)
		}
	}
	if ch := d.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			f := fn.f
			f.mu.Lock()
			same := f.rec && f.key == k && !f.gone && f.node == fn
			if same {
				f.attr(d.srv, &out.Attr, &info)
			}
			f.mu.Unlock()
			if same {
				return ch, 0
			}
		}
	}
	f := &file{srv: d.srv, dir: d, name: name, rec: true, key: k, mode: 0o644}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attr(d.srv, &out.Attr, &info)
	return f.newInode(ctx, d), 0
}

func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var out []fuse.DirEntry
	if d.isRoot() {
		types, err := d.srv.b.Types()
		if err != nil {
			return nil, errno(d.srv.log, "readdir", err)
		}
		out = append(out, fuse.DirEntry{Name: synkName, Mode: syscall.S_IFDIR})
		for _, t := range types {
			out = append(out, fuse.DirEntry{Name: fsstore.EscapeName(t), Mode: syscall.S_IFDIR})
		}
	} else {
		ents, err := d.srv.b.List(d.typ)
		if err != nil {
			return nil, errno(d.srv.log, "readdir", err)
		}
		recent := make(map[string]FileInfo, len(ents))
		d.mu.Lock()
		for _, e := range ents {
			name := fsstore.EscapeName(e.ID) + fsstore.Ext
			if _, ok := d.hidden[name]; ok {
				continue
			}
			if _, ok := d.locals[name]; ok {
				continue
			}
			recent[name] = e.FileInfo
			out = append(out, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG})
		}
		d.recent, d.recentAt = recent, time.Now()
		d.mu.Unlock()
	}
	d.mu.Lock()
	for name, f := range d.locals {
		mode := uint32(syscall.S_IFREG)
		if f.link != nil {
			mode = syscall.S_IFLNK
		}
		out = append(out, fuse.DirEntry{Name: name, Mode: mode})
	}
	d.mu.Unlock()
	return fs.NewListDirStream(out), 0
}

// forget drops the listing cache after a change of names.
func (d *dirNode) forget() {
	d.recent = nil
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !d.isRoot() {
		return nil, syscall.EPERM // records are flat: no folders in a type folder
	}
	typ, ok := typeName(name)
	if !ok {
		return nil, syscall.EPERM
	}
	d.srv.nsMu.Lock()
	defer d.srv.nsMu.Unlock()
	d.mu.Lock()
	_, local := d.locals[name]
	d.mu.Unlock()
	if local {
		return nil, syscall.EEXIST
	}
	if err := d.srv.b.MakeType(typ); err != nil {
		return nil, errno(d.srv.log, "mkdir", err)
	}
	d.dirAttr(&out.Attr)
	return d.typeDir(ctx, typ), 0
}

func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if !d.isRoot() {
		return syscall.ENOENT
	}
	if name == synkName {
		return syscall.EPERM
	}
	typ, ok := typeName(name)
	if !ok {
		return syscall.ENOENT
	}
	d.srv.nsMu.Lock()
	defer d.srv.nsMu.Unlock()
	if ch := d.GetChild(name); ch != nil {
		if td, ok := ch.Operations().(*dirNode); ok {
			td.mu.Lock()
			n := len(td.locals) + len(td.hidden)
			td.mu.Unlock()
			if n > 0 {
				return syscall.ENOTEMPTY
			}
		}
	}
	return errno(d.srv.log, "rmdir", d.srv.b.RemoveType(typ))
}

// existsLocked reports whether name exists in d; d.mu must be held.
func (d *dirNode) existsLocked(name string) bool {
	if _, ok := d.locals[name]; ok {
		return true
	}
	if _, ok := d.hidden[name]; ok {
		return false
	}
	if d.isRoot() {
		if name == synkName {
			return true
		}
		if typ, ok := typeName(name); ok {
			types, _ := d.srv.b.Types()
			for _, t := range types {
				if t == typ {
					return true
				}
			}
		}
		return false
	}
	k, ok := d.recordKey(name)
	if !ok {
		return false
	}
	_, err := d.srv.b.Stat(k)
	return err == nil
}

// unhideLocked cancels the delayed delete of name; d.mu must be held.
// It reports whether there was one.
func (d *dirNode) unhideLocked(name string) bool {
	t, ok := d.hidden[name]
	if ok {
		t.Stop()
		delete(d.hidden, name)
	}
	return ok
}

// hideLocked hides the record name and schedules its delete; d.mu and
// nsMu must be held.
func (d *dirNode) hideLocked(name string, k synkfs.Key) {
	if t, ok := d.hidden[name]; ok {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d.srv.opts.DeleteGrace, func() {
		d.srv.nsMu.Lock()
		defer d.srv.nsMu.Unlock()
		d.mu.Lock()
		if d.hidden[name] != t {
			d.mu.Unlock()
			return
		}
		delete(d.hidden, name)
		d.forget()
		d.mu.Unlock()
		if err := d.srv.b.Delete(context.Background(), k); err != nil && !errors.Is(err, synkfs.ErrNotFound) {
			d.srv.log.Error("delete record renamed away", "key", k, "err", err)
		}
	})
	d.hidden[name] = t
	d.forget()
}

func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if d.isRoot() && name == synkName {
		return nil, nil, 0, syscall.EEXIST
	}
	d.srv.nsMu.Lock()
	defer d.srv.nsMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	f := &file{srv: d.srv, dir: d, name: name, mode: mode & 0o7777, mtime: time.Now(), loaded: true}
	if old := d.locals[name]; old != nil {
		return nil, nil, 0, syscall.EEXIST
	}
	k, isRec := d.recordKey(name)
	switch {
	case isRec && d.unhideLocked(name):
		// The save of an editor that renamed the record away first:
		// whatever is written here replaces the record.
		f.rec, f.key, f.dirty = true, k, true
	case isRec:
		if _, err := d.srv.b.Stat(k); err == nil {
			// It exists though the kernel thought not: open it.
			f.rec, f.key, f.loaded = true, k, false
			if flags&syscall.O_TRUNC != 0 {
				f.loaded, f.dirty = true, true
			}
		} else {
			// A new record: held here until something is written.
			f.rec, f.key, f.fresh = true, k, true
			d.locals[name] = f
		}
	default:
		if d.isRoot() && d.existsLocked(name) {
			return nil, nil, 0, syscall.EEXIST
		}
		d.locals[name] = f
	}
	d.forget()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.loaded {
		if err := f.load(); err != nil {
			return nil, nil, 0, errno(d.srv.log, "create", err)
		}
	}
	f.attr(d.srv, &out.Attr, nil)
	in := f.newInode(ctx, d)
	if f.dirty {
		// The save of what is written waits for the file to be
		// quiet.
		defer f.touched()
	}
	// No handle: the content is per file (and in no-open mode the
	// kernel would never release one).
	return in, nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if _, isRec := d.recordKey(name); isRec {
		return nil, syscall.EPERM // a record is a regular file
	}
	d.srv.nsMu.Lock()
	defer d.srv.nsMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.existsLocked(name) {
		return nil, syscall.EEXIST
	}
	f := &file{srv: d.srv, dir: d, name: name, link: []byte(target), mode: 0o777, mtime: time.Now(), loaded: true}
	d.locals[name] = f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attr(d.srv, &out.Attr, nil)
	return f.newInode(ctx, d), 0
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	d.srv.nsMu.Lock()
	defer d.srv.nsMu.Unlock()
	d.mu.Lock()
	if f := d.locals[name]; f != nil {
		delete(d.locals, name)
		d.mu.Unlock()
		f.detach()
		return 0
	}
	if _, ok := d.hidden[name]; ok {
		d.mu.Unlock()
		return syscall.ENOENT
	}
	d.forget()
	d.mu.Unlock()
	k, ok := d.recordKey(name)
	if !ok {
		if d.isRoot() && d.GetChild(name) != nil {
			return syscall.EISDIR
		}
		return syscall.ENOENT
	}
	// Saves and deletes run to the end even when the caller is
	// interrupted: a change is applied whole or not at all.
	if err := d.srv.b.Delete(context.WithoutCancel(ctx), k); err != nil {
		return errno(d.srv.log, "unlink", err)
	}
	if ch := d.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.f.detach()
		}
	}
	return 0
}

// Rename moves a name within or across folders. What it means for the
// records depends on what the source is and what the target name is; see
// the package comment.
func (d *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	nd, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	if (d.isRoot() && name == synkName) || (nd.isRoot() && newName == synkName) {
		return syscall.EPERM
	}
	d.srv.nsMu.Lock()
	defer d.srv.nsMu.Unlock()

	ch := d.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	if _, ok := ch.Operations().(*dirNode); ok {
		return syscall.EXDEV // a type folder: let mv copy the records one by one
	}
	fn, ok := ch.Operations().(*fileNode)
	if !ok {
		return syscall.EPERM
	}
	f := fn.f

	nd.mu.Lock()
	exists := nd.existsLocked(newName)
	nd.mu.Unlock()
	if flags&unix.RENAME_NOREPLACE != 0 && exists {
		return syscall.EEXIST
	}
	dstKey, dstRec := nd.recordKey(newName)

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return syscall.ENOENT
	}
	if dstRec && f.link != nil {
		return syscall.EPERM
	}
	saved := f.rec && !f.fresh // the source is a record in the Backend
	var content []byte
	if saved || dstRec {
		if !f.loaded {
			if err := f.load(); err != nil {
				return errno(d.srv.log, "rename", err)
			}
		}
		content = append([]byte(nil), f.data...)
	}

	// Whatever the target name held is replaced.
	var replaced *file
	if old := nd.GetChild(newName); old != nil && old != ch {
		if ofn, ok := old.Operations().(*fileNode); ok {
			replaced = ofn.f
		}
	}

	if dstRec {
		nd.mu.Lock()
		nd.unhideLocked(newName)
		nd.mu.Unlock()
		if err := d.srv.b.Put(context.WithoutCancel(ctx), dstKey, content); err != nil {
			return errno(d.srv.log, "rename", err)
		}
		if saved {
			if err := d.srv.b.Delete(context.WithoutCancel(ctx), f.key); err != nil && !errors.Is(err, synkfs.ErrNotFound) {
				return errno(d.srv.log, "rename", err)
			}
		}
	} else if saved {
		d.mu.Lock()
		d.hideLocked(name, f.key)
		d.mu.Unlock()
	}

	// Move the name in the mount's own tables.
	d.mu.Lock()
	if d.locals[name] == f {
		delete(d.locals, name)
	}
	d.forget()
	d.mu.Unlock()
	nd.mu.Lock()
	if r := nd.locals[newName]; r != nil && r != f {
		replaced = r
	}
	delete(nd.locals, newName)
	if !dstRec {
		nd.locals[newName] = f
	}
	nd.forget()
	nd.mu.Unlock()
	if replaced != nil && replaced != f {
		replaced.detach()
	}

	f.dir, f.name = nd, newName
	f.fresh, f.dirty = false, false
	if dstRec {
		f.rec, f.key = true, dstKey
		f.reload()
		d.srv.invalidateFile(f)
	} else {
		if saved {
			f.data, f.loaded = content, true
		}
		f.rec, f.key = false, synkfs.Key{}
	}
	return 0
}

// OpendirHandle lets the kernel cache a folder's listing (FOPEN_CACHE_DIR):
// it drops the cache by itself when a name changes through it, and the
// mount drops it when the Backend reports a change made elsewhere.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle reads a listing made at the first read.
type dirHandle struct {
	d  *dirNode
	mu sync.Mutex
	ds fs.DirStream
}

var (
	_ fs.NodeOpendirHandler = (*dirNode)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
	_ fs.FileSeekdirer      = (*dirHandle)(nil)
	_ fs.FileReleasedirer   = (*dirHandle)(nil)
)

func (h *dirHandle) stream(ctx context.Context) syscall.Errno {
	if h.ds != nil {
		return 0
	}
	ds, e := h.d.Readdir(ctx)
	if e != 0 {
		return e
	}
	h.ds = ds
	return 0
}

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.stream(ctx); e != 0 {
		return nil, e
	}
	if !h.ds.HasNext() {
		return nil, 0
	}
	de, e := h.ds.Next()
	return &de, e
}

// Seekdir to 0 (rewinddir) lists the folder again.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 {
		if h.ds != nil {
			h.ds.Close()
		}
		h.ds = nil
		return h.stream(ctx)
	}
	if e := h.stream(ctx); e != 0 {
		return e
	}
	if sd, ok := h.ds.(fs.FileSeekdirer); ok {
		return sd.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ds != nil {
		h.ds.Close()
	}
}
