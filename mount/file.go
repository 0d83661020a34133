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
	// itself; for a record, a copy loaded by a read or a write (dropped
	// once the file is quiet, see saver), and the buffer of writes not
	// yet saved (dirty). The kernel tells the mount nothing of opens and
	// closes (see the package comment), so the buffer is per file.
	data   []byte
	loaded bool
	dirty  bool
	link   []byte // a symlink's target (emacs lock files)

	mode  uint32
	mtime time.Time
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
	_ fs.NodeReadlinker  = (*fileNode)(nil)
	_ fs.NodeOnForgetter = (*fileNode)(nil)
)

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

// reload drops a record's copy: the next read gets the Backend's
// content. f.mu must be held.
func (f *file) reload() {
	f.data, f.loaded = nil, false
}

// ino returns the inode number the kernel knows f by, 0 when it has
// forgotten f.
func (f *file) ino() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.node == nil {
		return 0
	}
	return f.node.StableAttr().Ino
}

// touched tells the saver that f was written, truncated or loaded. f.mu
// may be held (the saver never waits for it under its own lock).
func (f *file) touched() {
	f.srv.saver.touch(f)
}

// settle is the saver's word that f has been quiet: save what was
// written, or drop a clean copy of a record.
func (f *file) settle(ctx context.Context) {
	f.mu.Lock()
	if !f.dirty {
		if f.rec {
			f.data, f.loaded = nil, false
		}
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	_ = f.commit(ctx) // an error is logged; the writes stay buffered
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
// when nothing was written since the last save, so the saver's settle
// after an fsync adds no version.
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
	f.attr(f.srv, &out.Attr, nil)
	f.mu.Unlock()
	// go-fuse fills the inode number of GETATTR replies, not of SETATTR
	// ones, and the kernel takes the number from every reply.
	out.Ino = n.StableAttr().Ino
	if truncated {
		// open(O_TRUNC), truncate(2) and ftruncate(2) all arrive here,
		// and cannot all be told apart: each is one more change to
		// the buffer, saved with the writes that follow it.
		f.touched()
	}
	return 0
}

// Open answers ENOSYS where the kernel offers "no open" mode: from then on
// it sends no OPEN, FLUSH or RELEASE for any file of the mount, and a
// warm open+read+close costs no round trip at all (see the package
// comment). An older kernel gets an open without a handle: the content
// is per file, and saves never wait for a close.
func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.f.srv.noOpen {
		return nil, 0, syscall.ENOSYS
	}
	return nil, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec && !f.loaded {
		if err := f.load(); err != nil {
			return nil, errno(f.srv.log, "read", err)
		}
		defer f.touched() // drop the copy once quiet
	}
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(int64(len(f.data)), off+int64(len(dest)))
	return fuse.ReadResultData(bytes.Clone(f.data[off:end])), 0
}

func (n *fileNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f := n.f
	defer f.touched()
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

// Flush answers ENOSYS: the kernel then never sends FLUSH again, and a
// close costs no round trip. Saves do not wait for closes (see saver).
func (n *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// Fsync saves at once: an editor's fsync makes its save durable before
// the call returns.
func (n *fileNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	return n.f.commit(ctx)
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

// OnForget: the kernel dropped the inode. Writes still buffered are saved
// at once: nothing holds the file open, and a lookup of the name would
// otherwise make a new inode that does not see them.
func (n *fileNode) OnForget() {
	f := n.f
	f.mu.Lock()
	if f.node == n {
		f.node = nil
	}
	pending := f.rec && f.dirty
	f.mu.Unlock()
	if pending {
		f.srv.saver.expedite(f)
	}
}
