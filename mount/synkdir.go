package mount

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The files of the read-only .synk/ folder.
var synkFiles = []string{"status.json", "conflicts.json", "bad-entries.json"}

// synkDir is the read-only .synk/ folder at the root.
type synkDir struct {
	fs.Inode
	srv *Server
}

var (
	_ fs.NodeLookuper  = (*synkDir)(nil)
	_ fs.NodeReaddirer = (*synkDir)(nil)
	_ fs.NodeGetattrer = (*synkDir)(nil)
)

func (d *synkDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	t := d.srv.started
	out.SetTimes(&t, &t, &t)
	return 0
}

func (d *synkDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !slices.Contains(synkFiles, name) {
		return nil, syscall.ENOENT
	}
	ch := d.GetChild(name)
	if ch == nil {
		ch = d.NewInode(ctx, &synkFile{srv: d.srv, name: name}, fs.StableAttr{Mode: syscall.S_IFREG})
	}
	f := ch.Operations().(*synkFile)
	if e := f.Getattr(ctx, nil, &fuse.AttrOut{}); e != 0 {
		return nil, e
	}
	f.mu.Lock()
	f.fill(&out.Attr)
	f.mu.Unlock()
	// Generated anew for every stat and read: never cached.
	out.SetEntryTimeout(noCache)
	out.SetAttrTimeout(noCache)
	return ch, 0
}

func (d *synkDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	out := make([]fuse.DirEntry, 0, len(synkFiles))
	for _, n := range synkFiles {
		out = append(out, fuse.DirEntry{Name: n, Mode: syscall.S_IFREG})
	}
	return fs.NewListDirStream(out), 0
}

// noCache is the shortest timeout the kernel can be given for a cached
// entry or attribute (it rounds up to one clock tick): go-fuse replaces 0
// with the mount's default.
const noCache = time.Nanosecond

// synkFile is one generated file of .synk/. The mount runs without opens
// (see the package comment), so the kernel keeps its pages across opens:
// every stat and read asks for the attributes anew (noCache), and the
// mtime moves whenever the content changed, which makes the kernel drop
// the pages it holds (it was told to, CAP_AUTO_INVAL_DATA).
type synkFile struct {
	fs.Inode
	srv  *Server
	name string

	mu      sync.Mutex
	data    []byte    // the content as last generated
	changed time.Time // when data last changed
}

var (
	_ fs.NodeGetattrer = (*synkFile)(nil)
	_ fs.NodeSetattrer = (*synkFile)(nil)
	_ fs.NodeOpener    = (*synkFile)(nil)
	_ fs.NodeReader    = (*synkFile)(nil)
	_ fs.NodeWriter    = (*synkFile)(nil)
)

func (f *synkFile) content() ([]byte, error) {
	var v any
	var err error
	switch f.name {
	case "status.json":
		data, err := f.srv.b.Status()
		if err != nil {
			return nil, err
		}
		return append(f.srv.withUnsaved(data), '\n'), nil
	case "conflicts.json":
		v, err = f.srv.b.Conflicts()
	default:
		v, err = f.srv.b.BadEntries()
	}
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// refresh generates the content anew. f.mu must be held.
func (f *synkFile) refresh() error {
	data, err := f.content()
	if err != nil {
		return err
	}
	if f.changed.IsZero() || !bytes.Equal(data, f.data) {
		now := time.Now()
		if !now.After(f.changed) {
			now = f.changed.Add(time.Nanosecond)
		}
		f.data, f.changed = data, now
	}
	return nil
}

// fill sets a's attributes; f.mu must be held.
func (f *synkFile) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Size = uint64(len(f.data))
	a.SetTimes(&f.changed, &f.changed, &f.changed)
}

func (f *synkFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refresh(); err != nil {
		return errno(f.srv.log, "getattr", err)
	}
	f.fill(&out.Attr)
	out.SetTimeout(noCache)
	return 0
}

// Open refuses writing where the kernel still sends OPEN; in no-open mode
// it answers ENOSYS like every file, and writes fail in Write and Setattr.
func (f *synkFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if f.srv.noOpen {
		return nil, 0, syscall.ENOSYS
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

// Read serves the content the last Getattr generated, which is the size
// the kernel knows.
func (f *synkFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed.IsZero() {
		if err := f.refresh(); err != nil {
			return nil, errno(f.srv.log, "read", err)
		}
	}
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(int64(len(f.data)), off+int64(len(dest)))
	return fuse.ReadResultData(bytes.Clone(f.data[off:end])), 0
}

func (f *synkFile) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (f *synkFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// withUnsaved adds to the Backend's status (a JSON object) the list of
// record files written in the mount and not saved yet, as "unsaved",
// keeping the order of the Backend's fields.
func (s *Server) withUnsaved(status []byte) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(status, &m); err != nil || m == nil {
		return status
	}
	unsaved := s.saver.unsaved()
	if unsaved == nil {
		unsaved = []string{}
	}
	list, err := json.Marshal(unsaved)
	if err != nil {
		return status
	}
	body := bytes.TrimSpace(status) // a valid object: it ends with '}'
	out := bytes.TrimRight(bytes.Clone(body[:len(body)-1]), " \t\r\n")
	if len(m) > 0 {
		out = append(out, ',')
	}
	out = append(out, "\n  \"unsaved\": "...)
	out = append(out, list...)
	return append(out, "\n}"...)
}
