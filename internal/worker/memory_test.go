package worker

import (
	"errors"
	"testing"
)

func TestParseMemInfo(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		used, total int64
		err         error
	}{
		{"linux", "MemTotal:       16384000 kB\nMemFree:  1000 kB\nMemAvailable:    4096000 kB\n", (16384000 - 4096000) * 1024, 16384000 * 1024, nil},
		{"no available", "MemTotal: 10 kB\n", 0, 0, errNoMemInfo},
		{"garbage", "x\n:\nMemTotal: nope kB\n", 0, 0, errNoMemInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used, total, err := parseMemInfo([]byte(tc.in))
			if used != tc.used || total != tc.total || !errors.Is(err, tc.err) {
				t.Fatalf("got %d %d %v, want %d %d %v", used, total, err, tc.used, tc.total, tc.err)
			}
		})
	}
}
