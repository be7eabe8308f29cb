package seccomp_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// twoFiltersArg makes the test binary stack two filters that fail bpf(2)
// with different errnos on its main thread, report which one bpf(2) gets,
// and wait for its stdin to close.
const twoFiltersArg = "review11-two-filters"

func init() {
	if len(os.Args) != 2 || os.Args[1] != twoFiltersArg {
		return
	}
	// init runs on the main thread, which the filters go on.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for _, e := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		prog := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_BPF},
			{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(e)},
			{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		}
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
			fmt.Println("error", errno)
			os.Exit(1)
		}
	}
	_, _, errno := unix.RawSyscall(unix.SYS_BPF, 0, 0, 0)
	fmt.Println(int(errno))
	os.Stdin.Read(make([]byte, 1))
	os.Exit(0)
}

// The filters come out of the kernel oldest first: evaluated in that order,
// stacked filters that agree on the action but not on its errno give the
// errno bpf(2) really gets (the newest filter's).
func TestReadFiltersOrder(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("/proc/self/exe", twoFiltersArg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	got, aerr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || aerr != nil {
		t.Fatalf("the workload said %q: %v %v", line, err, aerr)
	}
	filters, err := seccomp.ReadFilters(hold(t, cmd.Process.Pid), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v, err := seccomp.EvalBPF(filters)
	if err != nil {
		t.Fatal(err)
	}
	if len(filters) != 2 || len(v.Verdicts) != 1 || v.Verdicts[0].Action != seccomp.Errno|seccomp.Action(got) {
		t.Errorf("bpf(2) fails with %v, the filters read say %v", unix.Errno(got), v)
	}
}
