package dynamo_test

import (
	"testing"

	"github.com/weirstream/weir/core/store/catalogtest"
	"github.com/weirstream/weir/infra/resources"
)

func TestCatalogConformance(t *testing.T) {
	cfg, _ := stack(t)
	catalogtest.Run(t, func(t *testing.T) catalogtest.Store {
		// A table per subtest: listing sees every job in the table.
		_, env := stack(t)
		return newStore(t, cfg, env[resources.EnvJobsTable])
	})
}
