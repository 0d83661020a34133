//go:build !linux && !darwin

package vfs

import (
	"errors"
	"os"
)

// Elsewhere neither is offered: callers fall back to a plain rename.

func (osFS) RenameNoReplace(o, n string) error {
	return &os.LinkError{Op: "rename", Old: o, New: n, Err: errors.ErrUnsupported}
}

func (osFS) Exchange(o, n string) error {
	return &os.LinkError{Op: "exchange", Old: o, New: n, Err: errors.ErrUnsupported}
}
