package vmtest_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/internal/vmtest"
)

func TestParse(t *testing.T) {
	out := `=== RUN   TestA
--- PASS: TestA (0.00s)
=== RUN   TestB
    b_test.go:9: kernel: too old
--- SKIP: TestB (0.01s)
=== RUN   TestC
=== RUN   TestC/sub
    c_test.go:3: boom
    --- FAIL: TestC/sub (0.00s)
--- FAIL: TestC (0.00s)
FAIL
`
	got := vmtest.Parse(out)
	want := vmtest.Summary{Passed: []string{"TestA"}, Failed: []string{"TestC"}, Skipped: []string{"TestB"},
		Why: map[string]string{"TestB": "b_test.go:9: kernel: too old"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

// TestRun boots the newest kernel once and checks what the harness
// promises: the command's output apart from the kernel's, its exit status,
// its environment and working directory, files copied in with their
// libraries, the mounts tests need, and a timeout that ends the VM.
func TestRun(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Skip(t, "needs root (scripts/kernels.sh installs QEMU as root)")
	}
	if vmtest.InVM() {
		t.Skip("already in a VM")
	}
	k := vmtest.Kernel(t, "6.12")
	accel, why := vmtest.Accel(k)
	t.Logf("accelerator: %s (%s)", accel, why)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := `echo "dir $(pwd) env $GREETING vm $BPFGATE_IN_VM"
grep -c '^' /proc/cpuinfo >/dev/null
for m in /sys/fs/bpf /sys/fs/cgroup /tmp; do grep -q " $m " /proc/mounts && echo "mounted $m"; done
[ -e /sys/kernel/btf/vmlinux ] && echo btf
uname -r
/vm/bin/self -test.run='^TestParse$' >/dev/null && echo "go binary ran"
echo to-stderr >&2
exit 7`
	r := vmtest.Run{Kernel: k, Dir: "/work/here", Env: []string{"GREETING=it's me"},
		Files:   map[string]string{"/vm/bin/self": exe},
		Command: []string{"/bin/sh", "-c", script}}
	res, err := r.Exec(context.Background())
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, res.Output)
	}
	t.Logf("boot %v, total %v", res.Boot, res.Total.Round(time.Millisecond))
	if res.ExitCode != 7 {
		t.Errorf("exit status %d, want 7", res.ExitCode)
	}
	for _, want := range []string{"dir /work/here env it's me vm 1\n", "mounted /sys/fs/bpf\n", "mounted /sys/fs/cgroup\n",
		"mounted /tmp\n", "btf\n", k.Release + "\n", "go binary ran\n", "to-stderr\n"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("output lacks %q:\n%s", want, res.Output)
		}
	}
	if strings.Contains(res.Output, "BPFGATE-VM") || strings.Contains(res.Output, "Linux version") {
		t.Errorf("output holds init's markers or the kernel's console:\n%s", res.Output)
	}

	r = vmtest.Run{Kernel: k, Command: []string{"/bin/sleep", "600"}, Timeout: 8 * time.Second}
	start := time.Now()
	res, err = r.Exec(context.Background())
	if !errors.Is(err, vmtest.ErrTimeout) {
		t.Errorf("a command that outlives the timeout: got %v (exit %d), want ErrTimeout", err, res.ExitCode)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the timed-out run took %v", d)
	}
}
