package memstore_test

import (
	"testing"

	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/core/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memstore.New() })
}
