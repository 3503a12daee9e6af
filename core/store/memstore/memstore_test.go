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

// Every write applied twice with its token, as a transport's retry after a
// lost answer would, answers as if applied once.
func TestConformanceUnderLostAnswers(t *testing.T) {
	var stores []*memstore.Store
	lost := func() int {
		n := 0
		for _, s := range stores {
			n += s.Replays()
		}
		return n
	}
	storetest.RunLostAnswers(t, func(*testing.T) store.Store {
		s := memstore.New()
		s.LoseAnswers(true)
		stores = append(stores, s)
		return s
	}, lost)
}
