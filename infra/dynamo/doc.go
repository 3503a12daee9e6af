// Package dynamo implements the core's persistence and leadership ports on
// DynamoDB: store.Store on the Jobs table and leader.Lease on the Lease
// table (see docs/data-model.md for every item, condition and cost).
//
// Every write that needs a guarantee is conditional: optimistic versions
// for configs and statuses, fences for everything the controller writes
// (raised on every item of a job by Claim, so each write keeps a
// single-item condition), and a per-job epoch counter, moved up atomically
// before a checkpoint item is written, so an epoch is never reused. A
// failed condition returns the stored item
// (ReturnValuesOnConditionCheckFailure=ALL_OLD), which tells a version
// conflict from a fenced writer from a stale epoch at no extra read, and
// which carries the token of the write that stored it: a write the SDK
// resent after its answer was lost finds its own token and succeeds
// (tokens.go).
//
// The adapters never load AWS configuration: callers build one client with
// NewClient from the aws.Config they loaded, and share it.
package dynamo
