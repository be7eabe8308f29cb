package testutil

import (
	"os"
	"strings"
	"testing"
)

// CgroupOf returns the cgroup2 path of process pid, from /proc/PID/cgroup
// ("0::PATH").
func CgroupOf(tb testing.TB, pid string) string {
	tb.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	tb.Fatalf("/proc/%s/cgroup has no cgroup2 line: %q", pid, data)
	return ""
}
