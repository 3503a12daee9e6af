package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// procStat is what launchers need from /proc/PID/stat.
type procStat struct {
	state byte
	pgrp  int
	// start is field 22, the start time in clock ticks since boot.
	start string
}

// readStat parses /proc/PID/stat. The command name in field 2 may hold
// spaces and parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	// fields[0] is field 3 (state), fields[2] field 5 (pgrp), fields[19]
	// field 22 (start time).
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 20 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected layout", pid)
	}
	pgrp, err := strconv.Atoi(string(fields[2]))
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: process group: %w", pid, err)
	}
	return procStat{state: fields[0][0], pgrp: pgrp, start: string(fields[19])}, nil
}

func startTime(pid int) (string, error) {
	st, err := readStat(pid)
	return st.start, err
}

// groupAlive says whether a process of group pgid is alive. Zombies do
// not count: where the init process does not reap (some container
// runtimes), a worker's dead children would otherwise keep the group
// looking alive for ever.
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		err := syscall.Kill(-pgid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.pgrp == pgid && st.state != 'Z' && st.state != 'X' {
			return true
		}
	}
	return false
}
