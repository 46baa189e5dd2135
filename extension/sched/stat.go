package sched

import (
	"bytes"
	"fmt"
	"strconv"
)

// statPolicy reads the policy field (the 41st) of a /proc/…/stat line. The
// command name (2nd, in parentheses) may hold spaces and parentheses, so
// fields are counted from its last ')'.
func statPolicy(stat []byte) (int, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("sched: no command name in %q", stat)
	}
	f := bytes.Fields(stat[i+1:]) // from field 3 on
	if len(f) < 41-2 {
		return 0, fmt.Errorf("sched: %d fields in stat", len(f)+2)
	}
	return strconv.Atoi(string(f[41-3]))
}
