package memstore_test

import (
	"testing"

	"github.com/weirstream/weir/core/store/catalogtest"
	"github.com/weirstream/weir/core/store/memstore"
)

func TestCatalogConformance(t *testing.T) {
	catalogtest.Run(t, func(*testing.T) catalogtest.Store { return memstore.New() })
}
