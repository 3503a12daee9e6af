// Package e2e holds the end-to-end test of the controller: the core's
// manager, state machine and JobController running on the real adapters
// (the DynamoDB store and lease, the SQS inbox and publisher) against the
// local AWS emulator, with simulated workers speaking protocol v1.
package e2e
