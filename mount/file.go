package mount

import (
	"bytes"
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/synkfs/synkfs"
)

// file is the content behind one name, and what it means: a record of the
// Backend (rec), or a file held only in the mount. A rename moves a file
// to another name and may change what it is; the kernel's inode moves
// with it.
type file struct {
	srv *Server

	mu   sync.Mutex
	dir  *dirNode // where it lives now
	name string
	node *fileNode // its current inode, nil once the kernel forgot it

	rec   bool       // a record file: content in the Backend
	key   synkfs.Key // when rec
	fresh bool       // a created record not yet saved (in dir.locals)
	gone  bool       // unlinked or replaced: open handles keep the content

	// data is the content: for a file held in the mount, the content
	// itself; for a record, a copy loaded while the file is open, and
	// the buffer of writes not yet saved (dirty).
	data   []byte
	loaded bool
	dirty  bool
	link   []byte // a symlink's target (emacs lock files)

	mode  uint32
	mtime time.Time
	opens int
}

// fileNode is the inode of a file.
type fileNode struct {
	fs.Inode
	f *file
}

var (
	_ fs.NodeGetattrer   = (*fileNode)(nil)
	_ fs.NodeSetattrer   = (*fileNode)(nil)
	_ fs.NodeOpener      = (*fileNode)(nil)
	_ fs.NodeReader      = (*fileNode)(nil)
	_ fs.NodeWriter      = (*fileNode)(nil)
	_ fs.NodeFlusher     = (*fileNode)(nil)
	_ fs.NodeFsyncer     = (*fileNode)(nil)
	_ fs.NodeReleaser    = (*fileNode)(nil)
	_ fs.NodeReadlinker  = (*fileNode)(nil)
	_ fs.NodeOnForgetter = (*fileNode)(nil)
)

// handle marks an open file; the content is per file, not per handle.
type handle struct{ f *file }

// newInode makes an inode for f in d. f.mu must be held.
func (f *file) newInode(ctx context.Context, d *dirNode) *fs.Inode {
	fn := &fileNode{f: f}
	mode := uint32(syscall.S_IFREG)
	if f.link != nil {
		mode = syscall.S_IFLNK
	}
	in := d.NewInode(ctx, fn, fs.StableAttr{Mode: mode})
	f.node = fn
	return in
}

// inode returns f's inode, making one if the kernel forgot it.
func (f *file) inode(ctx context.Context, d *dirNode, a *fuse.Attr) *fs.Inode {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attr(f.srv, a, nil)
	if f.node != nil {
		return f.node.EmbeddedInode()
	}
	return f.newInode(ctx, d)
}

// attr fills a; info, when given, is the Backend's word on a record not
// loaded. f.mu must be held.
func (f *file) attr(s *Server, a *fuse.Attr, info *FileInfo) {
	a.Nlink = 1
	a.Blksize = 4096
	switch {
	case f.link != nil:
		a.Mode = syscall.S_IFLNK | 0o777
		a.Size = uint64(len(f.link))
		a.SetTimes(&f.mtime, &f.mtime, &f.mtime)
		return
	case f.loaded || !f.rec:
		a.Size = uint64(len(f.data))
		a.SetTimes(&f.mtime, &f.mtime, &f.mtime)
	default:
		if info == nil {
			i, err := s.b.Stat(f.key)
			if err != nil {
				i = FileInfo{Mtime: s.started}
			}
			info = &i
		}
		a.Size = uint64(info.Size)
		a.SetTimes(&info.Mtime, &info.Mtime, &info.Mtime)
	}
	a.Mode = syscall.S_IFREG | f.mode
	a.Blocks = (a.Size + 511) / 512
}

// load reads a record's content from the Backend. f.mu must be held.
func (f *file) load() error {
	data, info, err := f.srv.b.Get(f.key)
	if err != nil {
		return err
	}
	f.data, f.loaded, f.mtime = data, true, info.Mtime
	return nil
}

// reload brings a record's copy up to date: reread it while the file is
// open, drop it otherwise. f.mu must be held.
func (f *file) reload() {
	if f.opens > 0 {
		if err := f.load(); err == nil {
			return
		}
	}
	f.data, f.loaded = nil, false
}

// detach cuts f from its name: it was unlinked or replaced.
func (f *file) detach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec && !f.loaded {
		f.data = []byte{}
	}
	f.gone, f.rec, f.fresh, f.dirty, f.loaded = true, false, false, false, true
}

// commit saves a record's buffered writes as one Put. It does nothing
// when nothing was written since the last save, so the flush at close
// after an fsync, and the release after a flush, add no version.
func (f *file) commit(ctx context.Context) syscall.Errno {
	f.mu.Lock()
	if !f.dirty {
		f.mu.Unlock()
		return 0
	}
	if !f.rec {
		f.dirty = false
		f.mu.Unlock()
		return 0
	}
	d, name, fresh := f.dir, f.name, f.fresh
	err := f.srv.b.Put(context.WithoutCancel(ctx), f.key, bytes.Clone(f.data))
	if err != nil {
		f.mu.Unlock()
		return errno(f.srv.log, "save", err)
	}
	f.dirty, f.fresh = false, false
	// The Backend keeps records in its own form (pretty-printed): forget
	// the bytes written, so that reads, here and in the kernel's cache,
	// get what it kept.
	f.data, f.loaded = nil, false
	f.mu.Unlock()
	d.mu.Lock()
	if fresh && d.locals[name] == f {
		delete(d.locals, name) // the Backend has it now
	}
	d.forget()
	d.mu.Unlock()
	f.srv.invalidateFile(f)
	return 0
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec && !f.loaded {
		info, err := f.srv.b.Stat(f.key)
		if err != nil {
			return errno(f.srv.log, "getattr", err)
		}
		f.attr(f.srv, &out.Attr, &info)
		return 0
	}
	f.attr(f.srv, &out.Attr, nil)
	return 0
}

// Setattr truncates and extends; chmod and utimens are kept in memory
// only, chown is accepted and ignored (editors copy ownership to their
// new files and must not fail).
func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f := n.f
	f.mu.Lock()
	truncated := false
	if sz, ok := in.GetSize(); ok && f.link == nil {
		if f.rec && !f.loaded {
			if err := f.load(); err != nil {
				f.mu.Unlock()
				return errno(f.srv.log, "truncate", err)
			}
		}
		if int(sz) <= len(f.data) {
			f.data = f.data[:sz]
		} else {
			f.data = append(f.data, make([]byte, int(sz)-len(f.data))...)
		}
		f.dirty, f.mtime, truncated = true, time.Now(), true
	}
	if m, ok := in.GetMode(); ok {
		f.mode = m & 0o7777
	}
	if t, ok := in.GetMTime(); ok && (f.loaded || !f.rec) {
		f.mtime = t
	}
	commitNow := truncated && f.opens == 0 // truncate(2) on a path
	f.mu.Unlock()
	if commitNow {
		if e := f.commit(ctx); e != 0 {
			return e
		}
	}
	f.mu.Lock()
	f.attr(f.srv, &out.Attr, nil)
	f.mu.Unlock()
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	// A record's content is read at the first Read or Write that needs
	// it: an open served from the kernel's page cache costs no read.
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		f.data, f.dirty, f.mtime = []byte{}, true, time.Now()
	}
	f.opens++
	ff := uint32(fuse.FOPEN_KEEP_CACHE)
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		ff |= fuse.FOPEN_NOFLUSH // nothing to save on close: spare the round trip
	}
	return &handle{f: f}, ff, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec && !f.loaded {
		if err := f.load(); err != nil {
			return nil, errno(f.srv.log, "read", err)
		}
	}
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(int64(len(f.data)), off+int64(len(dest)))
	return fuse.ReadResultData(bytes.Clone(f.data[off:end])), 0
}

func (n *fileNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec && !f.loaded {
		if err := f.load(); err != nil {
			return 0, errno(f.srv.log, "write", err)
		}
	}
	if end := off + int64(len(data)); end > int64(len(f.data)) {
		f.data = append(f.data, make([]byte, end-int64(len(f.data)))...)
	}
	copy(f.data[off:], data)
	f.dirty, f.mtime = true, time.Now()
	return uint32(len(data)), 0
}

func (n *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return n.f.commit(ctx)
}

func (n *fileNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	return n.f.commit(ctx)
}

func (n *fileNode) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	e := n.f.commit(ctx)
	f := n.f
	f.mu.Lock()
	f.opens--
	if f.opens <= 0 && f.rec && !f.dirty {
		f.opens = 0
		f.data, f.loaded = nil, false
	}
	f.mu.Unlock()
	return e
}

func (n *fileNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.link == nil {
		return nil, syscall.EINVAL
	}
	return bytes.Clone(f.link), 0
}

func (n *fileNode) OnForget() {
	f := n.f
	f.mu.Lock()
	if f.node == n {
		f.node = nil
	}
	f.mu.Unlock()
}
