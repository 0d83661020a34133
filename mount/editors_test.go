package mount_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Each editor's save, replayed as the syscalls the editor makes, must end
// as exactly one new version with the right body, and leave nothing but
// the record in the store.
func TestEditorSaves(t *testing.T) {
	c := newMount(t, childGraceEnv+"=300ms")
	dir := filepath.Join(c.mnt, "docs")
	mustOK(t, "mkdir", syscall.Mkdir(dir, 0o755))
	p := func(name string) string { return filepath.Join(dir, name) }

	saves := []struct {
		name string
		save func(t *testing.T, file, body string)
	}{
		{"vim", func(t *testing.T, file, body string) {
			// At start: the swap file, written and synced.
			swp := p("." + file + ".swp")
			fd := open(t, swp, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, 0o600)
			write(t, fd, strings.Repeat("b0VIM swap", 40))
			mustOK(t, "fsync swap", syscall.Fsync(fd))
			// :w with writebackup and backupcopy=auto: the 4913 probe...
			probe := open(t, p("4913"), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW, 0o644)
			mustOK(t, "fchown probe", syscall.Fchown(probe, os.Getuid(), os.Getgid()))
			var st syscall.Stat_t
			mustOK(t, "fstat probe", syscall.Fstat(probe, &st))
			closeFD(t, probe)
			mustOK(t, "unlink probe", syscall.Unlink(p("4913")))
			// ...then rename the original to the backup and write anew.
			mustOK(t, "rename to backup", syscall.Rename(p(file), p(file+"~")))
			w := open(t, p(file), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o644)
			write(t, w, body)
			mustOK(t, "fsync", syscall.Fsync(w))
			closeFD(t, w)
			mustOK(t, "chmod", syscall.Chmod(p(file), 0o644))
			mustOK(t, "unlink backup", syscall.Unlink(p(file+"~")))
			// Quit: the swap file goes.
			closeFD(t, fd)
			mustOK(t, "unlink swap", syscall.Unlink(swp))
		}},
		{"emacs", func(t *testing.T, file, body string) {
			lock := p(".#" + file)
			mustOK(t, "symlink lock", syscall.Symlink("user@host.4242:1700000000", lock))
			buf := make([]byte, 128)
			n, err := syscall.Readlink(lock, buf)
			mustOK(t, "readlink lock", err)
			if string(buf[:n]) != "user@host.4242:1700000000" {
				t.Fatalf("lock reads %q", buf[:n])
			}
			// Auto-save file.
			save(t, p("#"+file+"#"), body[:len(body)/2])
			// First save: backup by renaming, then write the file.
			mustOK(t, "rename to backup", syscall.Rename(p(file), p(file+"~")))
			save(t, p(file), body)
			mustOK(t, "unlink autosave", syscall.Unlink(p("#"+file+"#")))
			mustOK(t, "unlink lock", syscall.Unlink(lock))
			// The backup stays, in the mount only.
			if got := readFile(t, p(file+"~")); !strings.HasPrefix(got, "{") {
				t.Fatalf("backup reads %q", got)
			}
		}},
		{"vscode", func(t *testing.T, file, body string) {
			tmp := p("." + file + ".vsctmp")
			save(t, tmp, body)
			mustOK(t, "rename over", syscall.Rename(tmp, p(file)))
		}},
		{"sed -i", func(t *testing.T, file, body string) {
			tmp := p("sedAbC123")
			fd := open(t, tmp, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, 0o600)
			write(t, fd, body)
			mustOK(t, "fchmod", syscall.Fchmod(fd, 0o644))
			mustOK(t, "fchown", syscall.Fchown(fd, os.Getuid(), os.Getgid()))
			closeFD(t, fd)
			mustOK(t, "rename over", syscall.Rename(tmp, p(file)))
		}},
		{"utimens and chmod on a record", func(t *testing.T, file, body string) {
			save(t, p(file), body)
			now := time.Now()
			mustOK(t, "utimes", os.Chtimes(p(file), now, now))
			mustOK(t, "chmod", os.Chmod(p(file), 0o600))
		}},
	}
	for i, s := range saves {
		t.Run(s.name, func(t *testing.T) {
			file := "e" + string(rune('0'+i)) + ".json"
			save(t, p(file), `{"v": 0}`)
			before := c.dump()
			s.save(t, file, `{"v": 1, "editor": "`+s.name+`"}`+"\n")
			after := c.dump()
			oneSave(t, before, after)
			expectRecord(t, after, "docs/"+strings.TrimSuffix(file, ".json"), `{"editor":"`+s.name+`","v":1}`)
			// No delayed delete may remove the saved record later.
			time.Sleep(500 * time.Millisecond)
			if d := c.dump(); d.Version != after.Version {
				t.Fatalf("the store changed after the save: version %d -> %d", after.Version, d.Version)
			}
		})
	}

	// The emacs backup is still in the mount; nothing else is.
	got := listDir(t, dir)
	slices.Sort(got)
	want := []string{"e0.json", "e1.json", "e1.json~", "e2.json", "e3.json", "e4.json"}
	if !slices.Equal(got, want) {
		t.Fatalf("mount lists %v, want %v", got, want)
	}
	expectTreeClean(t, c, "docs", "e0.json", "e1.json", "e2.json", "e3.json", "e4.json")
}

// A change applied to the store from elsewhere (as the sync engine applies
// what the server sent) shows in the mount at once, although the kernel
// caches entries and pages for a minute.
func TestRemoteChangeShowsAtOnce(t *testing.T) {
	c := newMount(t)
	dir := filepath.Join(c.mnt, "items")
	mustOK(t, "mkdir", syscall.Mkdir(dir, 0o755))
	p := filepath.Join(dir, "x.json")
	save(t, p, `{"n": 1}`)
	settle(t, c.mnt)
	if got := readFile(t, p); got != "{\n  \"n\": 1\n}\n" {
		t.Fatalf("read %q", got)
	}
	// Cache a negative entry too.
	if _, err := os.Stat(filepath.Join(dir, "new.json")); !os.IsNotExist(err) {
		t.Fatalf("stat new.json: %v", err)
	}
	var st syscall.Stat_t
	mustOK(t, "stat", syscall.Stat(p, &st))
	// And the listings, which the kernel caches as well.
	if got := listDir(t, dir); !slices.Equal(got, []string{"x.json"}) {
		t.Fatalf("items lists %v", got)
	}
	rootList := listDir(t, c.mnt)

	c.remote("items", "x", `{"n": 2, "from": "server"}`)
	want := "{\n  \"from\": \"server\",\n  \"n\": 2\n}\n"
	waitFor(t, "the remote edit", func() bool { return readFile(t, p) == want })
	mustOK(t, "stat", syscall.Stat(p, &st))
	if st.Size != int64(len(want)) {
		t.Fatalf("size %d after a remote edit, want %d", st.Size, len(want))
	}

	c.remote("items", "new", `{"fresh": true}`)
	waitFor(t, "the remote create", func() bool {
		_, err := os.Stat(filepath.Join(dir, "new.json"))
		return err == nil
	})
	waitFor(t, "the remote create in the listing", func() bool {
		return slices.Equal(listDir(t, dir), []string{"new.json", "x.json"})
	})

	c.remote("items", "x", "")
	waitFor(t, "the remote delete", func() bool {
		_, err := os.Stat(p)
		return os.IsNotExist(err)
	})
	waitFor(t, "the remote delete in the listing", func() bool {
		return slices.Equal(listDir(t, dir), []string{"new.json"})
	})

	if slices.Contains(rootList, "other") {
		t.Fatal("type other listed before it exists")
	}
	c.remote("other", "o", `{"t": 1}`)
	waitFor(t, "a remote new type", func() bool {
		_, err := os.Stat(filepath.Join(c.mnt, "other", "o.json"))
		return err == nil
	})
	waitFor(t, "a remote new type in the listing", func() bool {
		return slices.Contains(listDir(t, c.mnt), "other")
	})
}

// waitFor polls cond briefly: invalidation is asynchronous, but must be
// quick (well under the kernel's one-minute cache).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not show in the mount within 2s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A mount whose process was killed is stale; the next mount there
// detaches it by itself, and the store kept every save.
func TestStaleMountRecovered(t *testing.T) {
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	mustOK(t, "mkdir", os.MkdirAll(mnt, 0o755))
	c := startChild(t, "store", state, mnt)
	mustOK(t, "mkdir", syscall.Mkdir(filepath.Join(mnt, "k"), 0o755))
	// A save is durable once fsync returns, or once the mount no longer
	// lists it as unsaved.
	saveSynced(t, filepath.Join(mnt, "k", "a.json"), `{"kept": true}`)
	save(t, filepath.Join(mnt, "k", "b.json"), `{"kept": "too"}`)
	settle(t, mnt)
	c.kill()
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != syscall.ENOTCONN {
		t.Fatalf("stat of the dead mount: %v, want ENOTCONN", err)
	}
	c2 := startChild(t, "store", state, mnt)
	expectRecord(t, c2.dump(), "k/a", `{"kept":true}`)
	expectRecord(t, c2.dump(), "k/b", `{"kept":"too"}`)
	if got := readFile(t, filepath.Join(mnt, "k", "a.json")); !strings.Contains(got, `"kept": true`) {
		t.Fatalf("read %q", got)
	}
}
