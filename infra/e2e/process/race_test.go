//go:build race

package process

// buildFlags build the binaries with the race detector when the tests run
// with it, so a data race in a controller or a worker fails the test.
var buildFlags = []string{"-race"}
