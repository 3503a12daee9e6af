// Package dynamo implements the core's persistence and leadership ports on
// DynamoDB: store.Store on the Jobs table and leader.Lease on the Lease
// table (see docs/data-model.md for every item, condition and cost).
//
// Every write that needs a guarantee is conditional: optimistic versions
// for configs and statuses, fences for everything the controller writes,
// and a per-job epoch counter, moved up atomically before a checkpoint item
// is written, so an epoch is never reused. A failed condition returns the
// stored item (ReturnValuesOnConditionCheckFailure=ALL_OLD), which tells a
// version conflict from a fenced writer from a stale epoch at no extra
// read.
//
// The adapters never load AWS configuration: callers build one client with
// NewClient from the aws.Config they loaded, and share it.
package dynamo
