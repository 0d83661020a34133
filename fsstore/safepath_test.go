package fsstore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSafePath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "real", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("no symbolic links here: %v", err)
	}
	if err := os.Symlink(filepath.Join(outside, "f"), filepath.Join(root, "real", "flink")); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"real/sub/x.json", "real/x", "missing/deeper/x", "link"} {
		p, err := SafePath(root, rel)
		if err != nil || p != filepath.Join(root, filepath.FromSlash(rel)) {
			t.Errorf("SafePath(%q) = %q, %v; want it accepted", rel, p, err)
		}
	}
	for _, rel := range []string{"", "../x", "/etc/passwd", "a//b", "a/./b", "a/../b", "link/x", "real/../link/x", "file/x", "x\x00y"} {
		if p, err := SafePath(root, rel); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("SafePath(%q) = %q, %v; want ErrUnsafePath", rel, p, err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "f"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFileNoFollow(filepath.Join(root, "real", "flink")); err == nil {
		t.Errorf("ReadFileNoFollow read %q through a link", data)
	}
	if err := os.WriteFile(filepath.Join(root, "real", "ok"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFileNoFollow(filepath.Join(root, "real", "ok")); err != nil || string(data) != "ok" {
		t.Errorf("ReadFileNoFollow = %q, %v", data, err)
	}
}
