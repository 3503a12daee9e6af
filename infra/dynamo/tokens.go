package dynamo

// Write tokens: how a write knows its own answer.
//
// The SDK retries a request whose answer did not arrive (a time-out, a
// reset connection). When the first attempt had taken effect, the retry
// meets the item as that attempt left it, and its condition fails: a
// version is no longer the one read, an item created is no longer absent.
// Read naively, a write's own success turns into a conflict, a skipped
// epoch or an orphan checkpoint item.
//
// So every conditional write generates one random token per logical call
// and stores it on the item it writes: `wtok` for a record (config,
// status, command record, checkpoint), `etok` on the status item for an
// epoch reservation, `ttok` on the status item for a transaction (parking
// a job). Deleting checkpoints needs none: a resent delete of an item
// that is gone succeeds again. The SDK resends the same request, token
// included. A failed condition whose returned item (ALL_OLD, or the
// fallback read) carries the call's token is the call's own earlier
// success, and the call returns as if that attempt had answered. A write
// that a retry would apply twice (the command record's version counter)
// also requires that its token is not stored yet, so its retry fails and
// finds the token instead of counting again.
//
// The lease does the same with its record version (`rvn`), which is
// already fresh for every write.

// newToken returns a token for one logical write.
func newToken() string { return randomHex(12) }
