//go:build !k8s

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestK8sLeanLoop: a bpfgate-k8s built without -tags k8s (go build -o
// bpfgate-k8s ./cmd/bpfgate, the tag forgotten) has no Kubernetes
// components and hands k8s to the bpfgate-k8s it finds: itself. The old
// code then looped: `bpfgate k8s ...` exec'd it forever (same pid, no
// end), and completion after k8s started an endless chain of processes
// (each killed after 5 s, its child orphaned and going on). Now the
// forwarded one refuses at once and says why. Each run is in a process
// group of its own, killed in the end, so that a loop cannot outlive the
// test.
func TestK8sLeanLoop(t *testing.T) {
	dir := t.TempDir()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	lean := filepath.Join(dir, "bpfgate")
	if out, err := exec.Command(goTool, "build", "-o", lean, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(lean)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bpfgate-k8s"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, args ...string) (string, string, error) {
		cmd := exec.Command(lean, args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pgid := cmd.Process.Pid
		defer syscall.Kill(-pgid, syscall.SIGKILL)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(8 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
			t.Fatalf("bpfgate %q still running after 8 s", args)
		}
		// Nothing it started goes on.
		deadline := time.Now().Add(2 * time.Second)
		for syscall.Kill(-pgid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("bpfgate %q returned, but processes it started still run", args)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return stdout.String(), stderr.String(), err
	}
	t.Run("run", func(t *testing.T) {
		_, stderr, err := run(t, "k8s", "device-plugin")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(stderr, "-tags k8s") {
			t.Fatalf("got %v, %q; want a refusal that names -tags k8s", err, stderr)
		}
	})
	t.Run("complete", func(t *testing.T) {
		start := time.Now()
		stdout, _, err := run(t, "__complete", "k8s", "")
		if err != nil || strings.Contains(stdout, "device-plugin") {
			t.Fatalf("got %v, %q", err, stdout)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("completion took %v", d)
		}
	})
}
