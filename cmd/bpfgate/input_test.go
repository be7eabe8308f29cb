package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bounded runs the CLI like bpfgate does, with stdin, at most 4 GiB of
// address space and 10 seconds: an unbounded read fails the test instead of
// taking the machine's memory or hanging it.
func bounded(t *testing.T, stdin io.Reader, args ...string) (result, time.Duration) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	limit := unix.Rlimit{Cur: 4 << 30, Max: 4 << 30}
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_AS, &limit, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	err = cmd.Wait()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("bpfgate %s: still running after %s, killed", strings.Join(args, " "), took.Round(time.Millisecond))
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}, took
}

// endlessReader is an input that never ends, like a runtime gone wrong.
type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// Inputs that are too large, endless, not files or of the wrong type get a
// prompt, clear error (exit status 1), never a panic or a grown process.
func TestOversizedAndMistypedInputs(t *testing.T) {
	dir := t.TempDir()
	sparse := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	manifests := filepath.Join(dir, "preload.d")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(manifests, "zero.yaml"), []byte("object: /dev/zero\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		stdin io.Reader
		args  []string
		want  string
	}{
		{"config /dev/zero", nil, []string{"--config", "/dev/zero", "profiles"},
			"config: /dev/zero is a character device: not a regular file"},
		{"config too large", nil, []string{"--config", sparse("big.yaml", 1<<20+1), "profiles"},
			"big.yaml is larger than 1 MiB: refusing it"},
		{"config FIFO", nil, []string{"--config", fifo, "profiles"}, "fifo.yaml is a FIFO"},
		{"config mistyped", nil, []string{"--config", file("typed.yaml", "profiles:\n  x:\n    uid: root\n"), "profiles"},
			"typed.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"seccomp base /dev/zero", nil, []string{"oci-hook", "seccomp", "--base", "/dev/zero", "-o", "-"},
			"base profile: /dev/zero is a character device"},
		{"seccomp base too large", nil, []string{"oci-hook", "seccomp", "--base", sparse("seccomp.json", 4<<20+1), "-o", "-"},
			"seccomp.json is larger than 4 MiB: refusing it"},
		{"seccomp base mistyped", nil, []string{"oci-hook", "seccomp", "-o", "-", "--base",
			file("typed.json", `{"syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ERRNO","args":5}]}`)},
			"syscalls[0].args: want a list, got a number"},
		{"OCI state endless", endlessReader{}, []string{"oci-hook", "--profile", "demo"},
			"the OCI state on stdin is larger than 1 MiB: refusing it"},
		{"OCI state mistyped", strings.NewReader(`{"id":"c","pid":"42","bundle":"/b"}`), []string{"oci-hook", "--profile", "demo"},
			"State.pid of type int"},
		{"preload object /dev/zero", nil, []string{"preload", "check", "--dir", manifests},
			"zero.yaml:1: object: /dev/zero is a character device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, took := bounded(t, tc.stdin, tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "panic") {
				t.Fatalf("want exit status 1 and %q, got %+v", tc.want, r)
			}
			if took > 5*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}
