package launch_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"

	"github.com/bpfgate/bpfgate/cgroup"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// TestReviewPoCRunner is not a test: run as a child of
// TestReviewSIGKILLDuringStartLeavesCgroup, it is a bpfgate that starts a
// sandbox and gets SIGKILLed at some point of the start.
func TestReviewPoCRunner(t *testing.T) {
	if os.Getenv(reviewPoCEnv) != "runner" {
		return // only runs as the child of a review PoC test
	}
	set := demoSet(t)
	code, err := launch.Run(launch.Config{Args: []string{"sleep", "1000"}, Delegation: set, Caps: delegate.CapsFor(names(t), set)})
	fmt.Println(code, err)
	os.Exit(0)
}

// TestReviewSIGKILLDuringStartLeavesCgroup: bpfgate creates the workload's
// cgroup before the supervisor exists; SIGKILL of bpfgate in between leaves
// the cgroup behind for good (nobody removes bpfgate/run-* later), although
// docs/sandbox.md says SIGKILL of bpfgate leaves no cgroup behind.
func TestReviewSIGKILLDuringStartLeavesCgroup(t *testing.T) {
	testutil.RequireRoot(t)
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	var leaked []string
	for i := 0; i < 60 && len(leaked) == 0; i++ {
		cmd := exec.Command("/proc/self/exe", "-test.run=^TestReviewPoCRunner$")
		cmd.Env = append(os.Environ(), reviewPoCEnv+"=runner")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%30) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		pid := strconv.Itoa(cmd.Process.Pid)
		// The supervisor, if it started, cleans up within its 5 s budget.
		time.Sleep(50 * time.Millisecond)
		deadline := time.Now().Add(6 * time.Second)
		for {
			m, _ := filepath.Glob(filepath.Join(root, launch.CgroupParent, "run-*-"+pid+"-*"))
			if len(m) == 0 || time.Now().After(deadline) {
				leaked = append(leaked, m...)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, d := range leaked {
		os.Remove(d)
	}
	if len(leaked) > 0 {
		t.Errorf("SIGKILL of bpfgate during start left cgroups behind: %v", leaked)
	}
}

// TestReviewPathSearchStopsAtNonExecutable: the sandbox's PATH search takes
// the first entry that exists (access F_OK), so a directory or a
// non-executable file of the command's name early in PATH makes the run
// fail with 126 where a shell (and execvp) goes on and runs the command
// found later.
func TestReviewPathSearchStopsAtNonExecutable(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	if err := os.Mkdir(filepath.Join(dir, "true"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, err := launch.Run(launch.Config{
		Args:       []string{"true"},
		Env:        []string{"PATH=" + dir + ":/usr/bin:/bin"},
		Delegation: demoSet(t),
	})
	if code != 0 {
		t.Errorf("true with a directory \"true\" early in PATH: code %d (%v), want 0 as sh -c true gives", code, err)
	}
}
