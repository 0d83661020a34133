package mount

import (
	"context"
	"encoding/json"
	"syscall"

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
	for _, n := range synkFiles {
		if n != name {
			continue
		}
		f := &synkFile{srv: d.srv, name: name}
		if e := f.Getattr(ctx, nil, &fuse.AttrOut{Attr: out.Attr}); e != 0 {
			return nil, e
		}
		data, err := f.content()
		if err != nil {
			return nil, errno(d.srv.log, "lookup", err)
		}
		f.fill(&out.Attr, len(data))
		// Generated on every read: never cached.
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
		if ch := d.GetChild(name); ch != nil {
			return ch, 0
		}
		return d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG}), 0
	}
	return nil, syscall.ENOENT
}

func (d *synkDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	out := make([]fuse.DirEntry, 0, len(synkFiles))
	for _, n := range synkFiles {
		out = append(out, fuse.DirEntry{Name: n, Mode: syscall.S_IFREG})
	}
	return fs.NewListDirStream(out), 0
}

// synkFile is one generated file of .synk/.
type synkFile struct {
	fs.Inode
	srv  *Server
	name string
}

var (
	_ fs.NodeGetattrer = (*synkFile)(nil)
	_ fs.NodeOpener    = (*synkFile)(nil)
	_ fs.NodeReader    = (*synkFile)(nil)
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
		return append(data, '\n'), nil
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

func (f *synkFile) fill(a *fuse.Attr, size int) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Size = uint64(size)
	t := f.srv.started
	a.SetTimes(&t, &t, &t)
}

func (f *synkFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	size := 0
	if h, ok := fh.(*synkHandle); ok {
		size = len(h.data)
	} else if data, err := f.content(); err == nil {
		size = len(data)
	}
	f.fill(&out.Attr, size)
	out.SetTimeout(0)
	return 0
}

// synkHandle holds the content as it was when the file was opened.
type synkHandle struct{ data []byte }

func (f *synkFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	data, err := f.content()
	if err != nil {
		return nil, 0, errno(f.srv.log, "open", err)
	}
	return &synkHandle{data: data}, fuse.FOPEN_DIRECT_IO, 0
}

func (f *synkFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*synkHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(int64(len(h.data)), off+int64(len(dest)))
	return fuse.ReadResultData(h.data[off:end]), 0
}
