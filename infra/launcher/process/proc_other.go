//go:build !linux

package process

import (
	"errors"
	"syscall"
)

// startTime is not known outside Linux; pid files then carry no start
// time, and a reused pid is not detected.
func startTime(int) (string, error) {
	return "", errors.New("process start times are read on Linux only")
}

// groupAlive says whether the process group has members; unreaped
// zombies count.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
