package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// FileVersion is the format version of token files this package writes.
const FileVersion = 1

// maxFile bounds a token file, so that a wrong path (a device, a huge
// file) fails fast.
const maxFile = 16 << 20

// file is the JSON form of a token file:
//
//	{"synkfsTokens": 1, "tokens": [{"name": "laptop", "role": "read-write",
//	  "types": ["note"], "hash": "sha256:…", "created": "…"}]}
type file struct {
	Version int     `json:"synkfsTokens"`
	Tokens  []Token `json:"tokens"`
}

// Decode parses a token file.
func Decode(data []byte) (*Set, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a synkfs token file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a synkfs token file: data after the object")
	}
	if f.Version != FileVersion {
		return nil, fmt.Errorf("token file format %d is not supported (this synkfs reads %d)", f.Version, FileVersion)
	}
	return NewSet(f.Tokens)
}

// Encode returns the token file holding tokens.
func Encode(tokens []Token) ([]byte, error) {
	if tokens == nil {
		tokens = []Token{}
	}
	data, err := json.MarshalIndent(file{Version: FileVersion, Tokens: tokens}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode token file: %w", err)
	}
	return append(data, '\n'), nil
}

// Load reads the token file at path.
func Load(path string) (*Set, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	s, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return s, nil
}

// Add appends a token named name with role and types to the token file at
// path (created if missing), and returns its new secret: the only time it
// exists outside the client that will use it. The file is replaced
// atomically (temp file, fsync, rename, fsync of the folder) with mode
// 0600. A name already in the file is refused.
func Add(path, name string, role Role, types []string, now time.Time) (secret string, err error) {
	var tokens []Token
	data, err := readSmall(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("read token file: %w", err)
	default:
		s, err := Decode(data)
		if err != nil {
			return "", fmt.Errorf("token file %s: %w", path, err)
		}
		tokens = s.Tokens()
	}
	if slices.ContainsFunc(tokens, func(t Token) bool { return t.Name == name }) {
		return "", fmt.Errorf("token file %s already has a token named %q", path, name)
	}
	secret, hash, err := NewSecret()
	if err != nil {
		return "", err
	}
	t := Token{Name: name, Role: role, Types: types, Hash: hash, Created: now.UTC().Truncate(time.Second)}
	tokens = append(tokens, t)
	if _, err := NewSet(tokens); err != nil {
		return "", err
	}
	out, err := Encode(tokens)
	if err != nil {
		return "", err
	}
	if err := writeAtomic(path, out, 0o600); err != nil {
		return "", fmt.Errorf("write token file: %w", err)
	}
	return secret, nil
}

// ErrNoToken is returned (wrapped) by Remove when the file has no token of
// the name given.
var ErrNoToken = errors.New("no such token")

// Remove deletes the token named name from the token file at path,
// replacing the file atomically like Add. A missing file, a file that does
// not decode and a name not in the file are errors that leave the file as
// it was (errors.Is(err, ErrNoToken) for the last). Removing the last
// token leaves a valid file with no tokens: a server reloading it refuses
// every client.
func Remove(path, name string) error {
	data, err := readSmall(path)
	if err != nil {
		return fmt.Errorf("read token file: %w", err)
	}
	s, err := Decode(data)
	if err != nil {
		return fmt.Errorf("token file %s: %w", path, err)
	}
	tokens := s.Tokens()
	i := slices.IndexFunc(tokens, func(t Token) bool { return t.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: token file %s has none named %q", ErrNoToken, path, name)
	}
	tokens = slices.Delete(tokens, i, i+1)
	out, err := Encode(tokens)
	if err != nil {
		return err
	}
	if err := writeAtomic(path, out, 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%s is %d bytes, larger than a token file can be", path, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s is larger than a token file can be", path)
	}
	return data, nil
}

// writeAtomic replaces path with data: a temp file in the same folder,
// written, fsynced, renamed over path, then the folder fsynced.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		_ = d.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
	}
	return nil
}
