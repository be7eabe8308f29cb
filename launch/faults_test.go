//go:build bpfgate_faults

// The fault tests kill the helpers at each step of the handshake. The
// helpers honour BPFGATE_FAULT only in builds with the bpfgate_faults tag:
// scripts/test.sh runs this file with it.

package launch_test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

// leftovers counts what a failed start could leave behind in this process:
// open fds, child processes and bpffs mounts.
type leftovers struct{ fds, children, mounts int }

func snapshot(t *testing.T) leftovers {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	children := 0
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		data, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		children += len(strings.Fields(string(data)))
	}
	// Only bpffs mounts owned by this test's workloads count: other test
	// packages mount and unmount their own in parallel.
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("bpf"))
	if err != nil {
		t.Fatal(err)
	}
	mounts := 0
	for _, m := range ms {
		if strings.Contains(","+m.VFSOptions+",", ",uid="+strconv.Itoa(faultHostID)+",") {
			mounts++
		}
	}
	return leftovers{len(fds), children, mounts}
}

// faultHostID is the host uid of the fault tests' workloads.
const faultHostID = 400000

var faultIDMap = []syscall.SysProcIDMap{{ContainerID: 0, HostID: faultHostID, Size: 65536}}

func TestHandshakeFaultsLeaveNothing(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		step, want string
		record     bool
	}{
		{bpffs.StepOpen, "step send", false},
		{bpffs.StepSend, "step send", false},
		{bpffs.StepAttach, "step attach", false},
		{bpffs.StepConfirm, "step attach", false},
		{"exec", "wait for exec", false},
		{"exec", "wait for exec", true},
		// The bpf() listener is made but never sent: the start fails.
		{"listener", "wait for exec", true},
		// It is sent, and then the start fails: bpfgate closes it.
		{"listener-sent", "wait for exec", true},
	} {
		t.Run(fmt.Sprintf("%s,record=%v", tc.step, tc.record), func(t *testing.T) {
			before := snapshot(t)
			_, err := launch.Start(launch.Config{Args: []string{"true"}, Delegation: demoSet(t),
				UIDMap: faultIDMap, GIDMap: faultIDMap, RecordBPF: tc.record,
				Env: append(os.Environ(), nsexec.EnvFault+"="+tc.step)})
			if err == nil {
				t.Fatal("start succeeded although the workload side was killed")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.step != "exec" && !strings.HasPrefix(tc.step, "listener") && !strings.Contains(err.Error(), "killed") {
				t.Errorf("error %q does not say the workload side was killed", err)
			}
			if after := snapshot(t); after != before {
				t.Errorf("left behind: before %+v, after %+v", before, after)
			}
		})
	}
	t.Run("host-timeout", func(t *testing.T) {
		// The privileged side gives up at once, while the sandbox is
		// still starting: it must take all of it down.
		before := snapshot(t)
		_, err := launch.Start(launch.Config{Args: []string{"true"}, Delegation: demoSet(t),
			UIDMap: faultIDMap, GIDMap: faultIDMap, Timeout: time.Nanosecond})
		if !errors.Is(err, bpffs.ErrTimeout) {
			t.Errorf("got %v, want ErrTimeout", err)
		}
		if after := snapshot(t); after != before {
			t.Errorf("left behind: before %+v, after %+v", before, after)
		}
	})
	t.Run("owner-not-mapped", func(t *testing.T) {
		before := snapshot(t)
		bad := uint32(70000) // outside the workload's 65536 ids
		_, err := launch.Start(launch.Config{Args: []string{"true"}, Delegation: demoSet(t),
			UIDMap: faultIDMap, GIDMap: faultIDMap, Owner: bpffs.Owner{UID: &bad}})
		if err == nil || !strings.Contains(err.Error(), "not mapped") {
			t.Errorf("bad uid: %v", err)
		}
		if after := snapshot(t); after != before {
			t.Errorf("left behind: before %+v, after %+v", before, after)
		}
	})
}
