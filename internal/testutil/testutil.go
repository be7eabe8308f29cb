// Package testutil holds helpers shared by bpfgate's tests.
package testutil

import (
	"os"
	"testing"

	"github.com/bpfgate/bpfgate/bpffs"
)

// InCI reports whether the tests run in CI, where a skip is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test, or fails it under CI=true: CI must run everything.
func Skip(tb testing.TB, why string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("cannot run under CI=true: %s", why)
	}
	tb.Skip(why)
}

// RequireRoot skips (or fails in CI) unless the test runs as root on a
// kernel with BPF tokens.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skip(tb, "needs root")
	}
	if err := bpffs.CheckTokenSupport(); err != nil {
		Skip(tb, "kernel: "+err.Error())
	}
}

// PublicDir makes a directory that an unprivileged workload (host uid
// 100000) can search, and removes it after the test.
func PublicDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "bpfgate-test-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
