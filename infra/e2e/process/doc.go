// Package process holds weir's end-to-end tests with real processes: two
// weir-controller binaries contend for the lease on the local AWS
// emulator and run simulated workers (cmd/simworker) through the process
// launcher, and the tests read what happened from DynamoDB through the
// SDK, then kill, pause and stop the leader.
//
// They need the emulator:
//
//	EMULATOR_PORT=4578 localstack/emulator.sh up
//	WEIR_INTEGRATION=1 AWS_ENDPOINT_URL=http://127.0.0.1:4578 AWS_REGION=us-east-1 \
//	  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test go test -race ./infra/e2e/process/
package process
