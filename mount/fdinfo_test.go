package mount

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

// parseFdinfo reads what the kernel writes for a real descriptor.
func TestParseFdinfo(t *testing.T) {
	f, err := os.OpenFile(t.TempDir()+"/x", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no /proc fdinfo (CI=true: the mount needs it): %v", err)
		}
		t.Skipf("no fdinfo here: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	flags, ino, ok := parseFdinfo(info)
	if !ok || ino != st.Ino || flags&syscall.O_ACCMODE != syscall.O_WRONLY || flags&syscall.O_APPEND == 0 {
		t.Fatalf("parseFdinfo(%q) = %o, %d, %v; want O_WRONLY|O_APPEND, ino %d", info, flags, ino, ok, st.Ino)
	}
	for _, bad := range []string{"", "pos:\t0\nflags:\t02\n", "flags:\t9\nino:\t1\n", "flags:\t02\nino:\t-1\n"} {
		if _, _, ok := parseFdinfo([]byte(bad)); ok {
			t.Errorf("parseFdinfo(%q) accepted", bad)
		}
	}
}

// FuzzParseFdinfo: any text, no panic; what it accepts names both fields.
func FuzzParseFdinfo(f *testing.F) {
	f.Add([]byte("pos:\t5\nflags:\t02100001\nmnt_id:\t42\nino:\t9223372036854775809\n"))
	f.Add([]byte("flags:\t0100000\nino:\t12\n"))
	f.Add([]byte("ino:\t1\n"))
	f.Fuzz(func(t *testing.T, info []byte) {
		flags, ino, ok := parseFdinfo(info)
		if !ok && (flags != 0 || ino != 0) {
			t.Fatalf("rejected with flags %o, ino %d", flags, ino)
		}
	})
}
