// Package testutil holds helpers shared by bpfgate's tests.
package testutil

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

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

// MountBPFFS mounts a fresh bpffs on a new directory and unmounts it (lazily,
// so open fds do not keep it) after the test.
func MountBPFFS(tb testing.TB) string {
	tb.Helper()
	dir := PublicDir(tb)
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		tb.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
