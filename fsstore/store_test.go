package fsstore

import (
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/storetest"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) synkfs.Store {
		s, err := Open(t.TempDir(), &Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestStoreContractReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T, dir string) synkfs.Store {
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
