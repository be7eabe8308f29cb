package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// ToolsRoot returns the Debian trixie root that holds real third-party eBPF
// tools (libbpf-tools, bpftool, bpftrace, xdp-tools), which
// scripts/tools-rootfs.sh builds and caches; it skips the test (fails it
// under CI=true) with the reason when there is none.
func ToolsRoot(tb testing.TB) string {
	tb.Helper()
	if runtime.GOARCH != "amd64" {
		Skip(tb, "real tools: the tools root is built for amd64 only")
	}
	script := filepath.Join(RepoRoot(tb), "scripts", "tools-rootfs.sh")
	out, err := exec.Command("bash", script, "--path").Output()
	if err != nil {
		why := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			why = strings.TrimSpace(string(ee.Stderr))
		}
		Skip(tb, "real tools: "+why)
	}
	return strings.TrimSpace(string(out))
}

// ToolCmd is the command line that runs the program at path inside the
// tools root (as "usr/sbin/runqlat-libbpf") with args, through the root's
// own dynamic loader and libraries: trixie binaries need trixie's libc,
// and the loader needs no privilege, so it works in any sandbox that can
// read the root.
func ToolCmd(root, path string, args ...string) []string {
	libs := filepath.Join(root, "lib/x86_64-linux-gnu") + ":" + filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	return append([]string{filepath.Join(root, "lib64/ld-linux-x86-64.so.2"), "--library-path", libs,
		filepath.Join(root, path)}, args...)
}

// RepoRoot returns the root of this module's checkout: the first directory
// at or above the working directory with a go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// SumMatches adds up the first group of every match of re in out, as the
// tools' counts are read (a histogram's rows, xdp-filter's drops).
func SumMatches(re *regexp.Regexp, out string) int {
	n := 0
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}
