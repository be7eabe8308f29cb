package main

// Attacks on `bpfgate profile` and `bpfgate doctor` by the workload they
// run (issue 11 review).

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/profile"
)

// hostileVerify succeeds while it is recorded (the recorder's filter is its
// second) and fails its verification run with stderr that tries to end the
// YAML comment it is quoted in (a lone CR, NEL and LINE SEPARATOR are line
// breaks to YAML) and to write terminal escapes.
const hostileVerify = `grep -q '^Seccomp_filters:.2' /proc/self/status && exit 0
printf 'oops\rprofiles:\r  evil:\r    cmds: [map_create]\r    maps: [hash]\r    caps: [CAP_NET_RAW]\r' >&2
printf '\302\205  nel: x\342\200\250  ls: x\342\200\251  ps: x\n' >&2
[ -n "$ESCAPES" ] && printf '\033]0;owned\007\033[2K\233J\n' >&2
exit 1`

func TestProfileHostileStderr(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"ESCAPES=", "ESCAPES=1"} {
		for _, format := range []string{"yaml", "flags"} {
			r := bpfgate(t, "profile", "--format", format, "--", "env", env, "sh", "-c", hostileVerify)
			if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "NOT VERIFIED") {
				t.Fatalf("want a failed verification: %+v", r)
			}
			for _, out := range []string{r.stdout, r.stderr} {
				if i := strings.IndexAny(out, "\r\x1b\a\u009b\u0085\u2028\u2029"); i >= 0 {
					t.Errorf("%s %s: workload text reaches the output raw at %d: %q", env, format, i, out)
				}
			}
			if format != "yaml" {
				continue
			}
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(cfg, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			ps, err := profile.Load(cfg, names)
			if err != nil || len(ps) != 0 {
				t.Errorf("%s: the workload's stderr made bpfgate's output a profile, or unreadable: %+v (%v)", env, ps, err)
			}
		}
	}
	// The same stderr when even the recorded run fails: an error message.
	r := bpfgate(t, "profile", "--", "sh", "-c", "printf 'broken\\033]0;owned\\007\\r\\n' >&2; exit 3")
	if r.code != 1 || !strings.Contains(r.stderr, "broken") || strings.ContainsAny(r.stderr, "\r\x1b\a") {
		t.Errorf("failing command's stderr: %+v", r)
	}
}

// --check is bounded by --timeout even when its processes outlive the
// shell (a pipeline) and hold its standard input, which the workload's
// output filled.
func TestProfileCheckBounded(t *testing.T) {
	testutil.RequireRoot(t)
	start := time.Now()
	r := bpfgateTimeout(t, 60*time.Second, "profile", "--timeout", "2s", "--check", "cat | sleep 30",
		"--", "head", "-c", "1000000", "/dev/zero")
	if took := time.Since(start); took > 10*time.Second || r.code != 1 || !strings.Contains(r.stderr, "--check timed out") {
		t.Errorf("took %v: %+v", took, r)
	}
}

// bpfgateTimeout runs bpfgate as bpfgate does, killed after limit.
func bpfgateTimeout(t *testing.T, limit time.Duration, args ...string) result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("bpfgate %v still ran after %v", args, limit)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}
