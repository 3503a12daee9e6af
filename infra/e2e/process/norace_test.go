//go:build !race

package process

var buildFlags []string
