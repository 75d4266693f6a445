package worker

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
)

// errNoMemInfo is returned when /proc/meminfo lacks MemTotal or
// MemAvailable.
var errNoMemInfo = errors.New("worker: meminfo without MemTotal and MemAvailable")

// ReadMemInfo returns the memory in use (MemTotal - MemAvailable) and in
// all of this machine, from /proc/meminfo. It is the default of
// Config.Memory; on systems without /proc it returns the open error.
func ReadMemInfo() (used, total int64, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	return parseMemInfo(b)
}

// parseMemInfo reads MemTotal and MemAvailable (in kB) from meminfo.
func parseMemInfo(b []byte) (used, total int64, err error) {
	var avail int64 = -1
	total = -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		kb, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil {
			continue
		}
		switch name {
		case "MemTotal":
			total = kb * 1024
		case "MemAvailable":
			avail = kb * 1024
		}
	}
	if total <= 0 || avail < 0 {
		return 0, 0, errNoMemInfo
	}
	return max(total-avail, 0), total, nil
}
