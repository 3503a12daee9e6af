// Package worker is the Go SDK for weir workers: the programs that run a
// job's tasks. A worker reads who it is from the environment its launcher
// set (IdentityFromEnv), and Worker.Run then does everything the worker
// protocol (docs/protocol.md) asks: it sends the worker's whole state in one
// envelope per heartbeat interval, sooner when a subtask starts, finishes,
// fails, checkpoints or commits; it reads the job's command record at an
// adaptive interval; and it calls the program's own code (a Program) to
// start, checkpoint, commit and stop, until the run is over.
//
// The SDK's core talks to AWS through two small ports, Publisher and
// Commands, so it runs against fakes (and a fake clock) in tests; Connect
// gives the real ones. docs/worker.md has a complete example.
package worker
