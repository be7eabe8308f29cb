package main

// Attacks on `bpfgate profile` and `bpfgate doctor` by the workload they
// run (issue 11 review).

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

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

// tokenCallArg makes the test binary a workload that asks for a kprobe
// program with a token (fd -1: the kernel refuses it) and exits 0.
const tokenCallArg = "review11-kprobe-with-token"

func init() {
	if len(os.Args) == 2 && os.Args[1] == tokenCallArg {
		var attr [160]byte
		ne := func(off int, v uint32) { *(*uint32)(unsafe.Pointer(&attr[off])) = v }
		ne(0, unix.BPF_PROG_TYPE_KPROBE)
		ne(44, 1<<16) // BPF_F_TOKEN_FD
		ne(144, ^uint32(0))
		unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		os.Exit(0)
	}
}

// What the workload asks for outside the starting delegation is never
// granted to it (in the verification and --minimize runs) nor printed as
// what it needs: it only learns that the kernel refused it.
func TestProfileStaysInsideStart(t *testing.T) {
	testutil.RequireRoot(t)
	r := bpfgate(t, "profile", "--json", "--profile", "demo", "--", "/proc/self/exe", tokenCallArg)
	var out struct {
		Progs    []string `json:"allowed_progs"`
		Recorded struct {
			Progs []string `json:"allowed_progs"`
		} `json:"recorded"`
		Options   string   `json:"options"`
		NotJudged []string `json:"not_judged"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: %+v", err, r)
	}
	for _, l := range [][]string{out.Progs, out.Recorded.Progs} {
		if slices.Contains(l, "kprobe") {
			t.Errorf("profile --profile demo granted or printed kprobe, which demo does not delegate: %+v", out)
		}
	}
	if !slices.ContainsFunc(out.NotJudged, func(s string) bool {
		return strings.Contains(s, "kprobe") && strings.Contains(s, "starting delegation")
	}) {
		t.Errorf("the call outside the starting delegation is not named: %+v", out.NotJudged)
	}
}
