package kernels

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/internal/vmtest"
	"github.com/bpfgate/bpfgate/token"
)

// kernels are the kernels scripts/kernels.sh pins, and whether they have
// BPF tokens.
var kernels = []struct {
	name   string
	tokens bool
}{
	{"6.1", false},
	{"6.12", true},
}

// core are the packages whose tests exercise delegation, tokens and the
// sandbox without podman or the network.
var core = []string{"./delegate", "./bpffs", "./token", "./launch"}

// excluded are the tests of core that cannot run in the VM on any kernel,
// and why; they run on the host (scripts/test.sh).
var excluded = map[string]map[string]string{
	"./delegate": {
		"TestNoYAML": "lists the package's imports with `go list`: the VM has no Go toolchain, and imports do not depend on the kernel",
	},
	"./launch": {
		"TestLibraryNeedsNoCLI":     "lists the package's imports with `go list`: the VM has no Go toolchain, and imports do not depend on the kernel",
		"TestHostileNamespaceOwner": "compiles its attacker (testdata/hostile) with gcc while it runs: the VM has no C compiler",
	},
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Skip(t, "needs root")
	}
	if vmtest.InVM() {
		t.Skip("already in a VM")
	}
}

// TestKernelConfig checks that each pinned kernel builds in what the VM and
// the tests need, so that a new pin without it fails here and not as a
// puzzling test failure in the VM.
func TestKernelConfig(t *testing.T) {
	need := []string{
		"CONFIG_BPF_SYSCALL=y", "CONFIG_BPF_JIT=y", "CONFIG_DEBUG_INFO_BTF=y", "CONFIG_CGROUP_BPF=y",
		"CONFIG_BPF_LSM=y", "CONFIG_USER_NS=y", "CONFIG_SECCOMP_FILTER=y", "CONFIG_TMPFS=y",
		"CONFIG_DEVTMPFS=y", "CONFIG_BLK_DEV_INITRD=y", "CONFIG_SERIAL_8250_CONSOLE=y",
	}
	for _, kc := range kernels {
		k := vmtest.Kernel(t, kc.name)
		for _, line := range need {
			ok, err := k.HasConfig(line)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Errorf("%s (%s): the config lacks %s", k.Name, k.Release, line)
			}
		}
	}
}

// TestCore runs the core packages' tests on every kernel.
func TestCore(t *testing.T) {
	requireRoot(t)
	bins := map[string]string{}
	for _, pkg := range core {
		bins[pkg] = vmtest.Build(t, pkg, true)
	}
	for _, kc := range kernels {
		t.Run(kc.name, func(t *testing.T) {
			k := vmtest.Kernel(t, kc.name)
			accel, why := vmtest.Accel(k)
			t.Logf("%s (%s) under %s: %s", k.Name, k.Release, accel, why)
			for _, pkg := range core {
				t.Run(strings.TrimPrefix(pkg, "./"), func(t *testing.T) {
					runCore(t, k, kc.tokens, pkg, bins[pkg])
				})
			}
		})
	}
}

func runCore(t *testing.T, k vmtest.Kern, tokens bool, pkg, bin string) {
	args := []string{"-test.v", "-test.count=1"}
	if ex := excluded[pkg]; len(ex) > 0 {
		names := make([]string, 0, len(ex))
		for n := range ex {
			names = append(names, regexp.QuoteMeta(n))
		}
		sort.Strings(names)
		args = append(args, "-test.skip=^("+strings.Join(names, "|")+")$")
	}
	r := vmtest.GoTestRun(t, k, pkg, bin, args...)
	if tokens {
		// Nothing may skip where tokens exist.
		r.Env = []string{"CI=true"}
	}
	start := time.Now()
	res, err := r.Exec(context.Background())
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, res.Output)
	}
	s := vmtest.Parse(res.Output)
	t.Logf("%s on %s: %d passed, %d failed, %d skipped, %d excluded (boot %v, run %v)",
		pkg, k.Name, len(s.Passed), len(s.Failed), len(s.Skipped), len(excluded[pkg]),
		res.Boot.Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond))
	if res.ExitCode != 0 || len(s.Failed) > 0 {
		t.Fatalf("%s on %s: exit status %d, failed %v:\n%s", pkg, k.Name, res.ExitCode, s.Failed, res.Output)
	}
	if len(s.Passed) == 0 {
		t.Fatalf("%s on %s: no test passed:\n%s", pkg, k.Name, res.Output)
	}
	for n := range excluded[pkg] {
		if contains(s.Passed, n) || contains(s.Skipped, n) {
			t.Errorf("%s on %s: %s ran although excluded", pkg, k.Name, n)
		}
	}
	if tokens {
		if len(s.Skipped) > 0 {
			t.Errorf("%s on %s: skipped %v: %v", pkg, k.Name, s.Skipped, s.Why)
		}
		return
	}
	// Before tokens: what needs them skips for that reason alone, and
	// every core package has such tests.
	want := "kernel: " + bpffs.ErrNoTokenSupport.Error()
	for _, n := range s.Skipped {
		if !strings.Contains(s.Why[n], want) {
			t.Errorf("%s on %s: %s skipped for another reason than %q: %q", pkg, k.Name, n, want, s.Why[n])
		}
	}
	if len(s.Skipped) == 0 {
		t.Errorf("%s on %s: nothing skipped for lack of tokens: does this kernel have them?", pkg, k.Name)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCLI runs the real bpfgate binary on every kernel: on 6.12 a
// workload gets its token (its info from fdinfo: no token info before
// 6.17); before tokens, bpfgate run refuses with the clear error and
// nothing runs, doctor fails its kernel check, and token probe says it
// has no token and why.
func TestCLI(t *testing.T) {
	requireRoot(t)
	bin := vmtest.Build(t, "./cmd/bpfgate", false)
	// Each command's output and exit status, between markers.
	script := `run() { echo "== $*"; "$@"; echo "== exit $?"; }
run bpfgate run --profile demo -- touch /tmp/ran
[ -e /tmp/ran ] && echo "== the workload ran"
run bpfgate run --profile demo -- bpfgate token show
run bpfgate run --profile demo -- bpfgate token probe
run bpfgate token probe
run bpfgate doctor
`
	for _, kc := range kernels {
		t.Run(kc.name, func(t *testing.T) {
			k := vmtest.Kernel(t, kc.name)
			r := vmtest.Run{Kernel: k, Files: map[string]string{"/usr/bin/bpfgate": bin},
				Command: []string{"/bin/sh", "-c", script}, Timeout: 3 * time.Minute}
			res, err := r.Exec(context.Background())
			if err != nil {
				t.Fatalf("%v\noutput:\n%s", err, res.Output)
			}
			got := splitRuns(res.Output)
			check := func(cmd string, exit string, want ...string) {
				t.Helper()
				out, ok := got[cmd]
				if !ok {
					t.Errorf("%s: no output for %q:\n%s", k.Name, cmd, res.Output)
					return
				}
				if !strings.HasSuffix(out, "== exit "+exit+"\n") {
					t.Errorf("%s: %s: want exit status %s:\n%s", k.Name, cmd, exit, out)
				}
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("%s: %s: output lacks %q:\n%s", k.Name, cmd, w, out)
					}
				}
			}
			ran := strings.Contains(res.Output, "== the workload ran\n")
			if kc.tokens {
				if !ran {
					t.Errorf("%s: the workload did not run:\n%s", k.Name, res.Output)
				}
				check("bpfgate run --profile demo -- bpfgate token show", "0", "token: yes (info from fdinfo)",
					"allowed_maps:    hash array")
				check("bpfgate run --profile demo -- bpfgate token probe", "0", "token from /sys/fs/bpf\n",
					"prog  socket_filter  ok")
				check("bpfgate doctor", "0", "ok   kernel: Linux "+k.Release+": BPF_TOKEN_CREATE is known")
				return
			}
			refusal := "bpfgate: run touch: " + bpffs.ErrNoTokenSupport.Error() + "\n"
			check("bpfgate run --profile demo -- touch /tmp/ran", "125", refusal)
			if ran {
				t.Errorf("%s: the workload ran without tokens", k.Name)
			}
			check("bpfgate run --profile demo -- bpfgate token show", "125")
			check("bpfgate doctor", "1", "fail kernel: Linux "+k.Release+": bpf(2) does not know BPF_TOKEN_CREATE (EINVAL): no BPF tokens",
				"fix: boot Linux 6.9 or later")
			// token probe still probes (as root, without a token), and says
			// why it has none: the kernel predates tokens.
			check("bpfgate token probe", "0", "bpfgate: no token from /sys/fs/bpf: ", token.ErrNoTokens.Error(),
				"probing without a token", "\nno token\n")
		})
	}
}

// splitRuns maps each "== CMD" of the script to its output, up to and
// including its "== exit N" line.
func splitRuns(out string) map[string]string {
	runs := map[string]string{}
	cmd := ""
	for _, l := range strings.SplitAfter(out, "\n") {
		switch {
		case strings.HasPrefix(l, "== exit "):
			if cmd != "" {
				runs[cmd] += l
			}
			cmd = ""
		case strings.HasPrefix(l, "== "):
			cmd = strings.TrimSuffix(strings.TrimPrefix(l, "== "), "\n")
			runs[cmd] = ""
		case cmd != "":
			runs[cmd] += l
		}
	}
	return runs
}

// guardTests are the BPF LSM guard's tests that need a kernel running BPF
// LSM programs (preload/guard, -tags bpflsm), which the host refuses.
var guardTests = []string{"TestGuardRefusesRoot", "TestGuardManager", "TestGuardDisable", "TestGuardDisableRefusedToRoot", "TestGuardProgramWrites", "TestGuardRaceManager", "TestGuardInnerMaps", "TestGuardMmap", "TestGuardRaceTreeMap"}

// TestGuard runs the guard's tests (built with -tags bpflsm), and bpfgate's
// guard command's, on 6.12 with lockdown=integrity (as a locked-down host
// runs): each operation it refuses fails with EPERM for root, the manager
// still applies and removes, and disable restores normal behaviour.
func TestGuard(t *testing.T) {
	requireRoot(t)
	k := vmtest.Kernel(t, "6.12")
	for _, tc := range []struct {
		pkg, tags string
		args      []string
		want      []string // tests that must pass, and words the output must hold
	}{
		{"./preload/guard", "bpflsm", []string{"-test.skip", "^TestGuardLock$"}, append([]string{"TestEnableRefusedLeavesNothing", "TestStatusAndDisableWhenOff"}, guardTests...)},
		// A locked guard stays until reboot: each lock test has a VM of
		// its own.
		{"./preload/guard", "bpflsm", []string{"-test.run", "^TestGuardLock$"}, []string{"TestGuardLock"}},
		// The CLI tests also pass where the kernel refuses the guard: make
		// sure they took the path where it runs.
		{"./cmd/bpfgate", "", []string{"-test.run", "^TestPreloadGuardCLI$"}, []string{"TestPreloadGuardCLI", "this kernel runs the guard"}},
		{"./cmd/bpfgate", "", []string{"-test.run", "^TestPreloadGuardLockCLI$"}, []string{"TestPreloadGuardLockCLI", "this kernel runs the guard"}},
	} {
		name := strings.TrimPrefix(tc.pkg, "./")
		if len(tc.want) <= 2 {
			name += ":" + tc.want[0]
		}
		t.Run(name, func(t *testing.T) {
			bin := vmtest.BuildWith(t, tc.pkg, true, tc.tags, "CGO_ENABLED=0")
			r := vmtest.GoTestRun(t, k, tc.pkg, bin, append([]string{"-test.v", "-test.count=1"}, tc.args...)...)
			r.Env = []string{"CI=true"}
			r.Cmdline = []string{"lockdown=integrity"}
			// TestPreloadGuardCLI applies an example with the guard on.
			r.Files["/work/examples/preload"] = filepath.Join(testutil.RepoRoot(t), "examples", "preload")
			execAll(t, r, tc.pkg, tc.want)
		})
	}
}

// TestAudit runs the audit package's tests on 6.12 booted with
// syscall.x32=y (Debian builds x32 in but leaves it off), the one kernel
// here that takes x32 system calls: the tracer records bpf() through each
// of x86-64, ia32 and x32, on a kernel older than the host's. TestCompat's
// helper is built here, static, since the VM has no C compiler.
func TestAudit(t *testing.T) {
	requireRoot(t)
	k := vmtest.Kernel(t, "6.12")
	helper := filepath.Join(t.TempDir(), "compat_bpf")
	src := filepath.Join(testutil.RepoRoot(t), "audit", "testdata", "compat_bpf.c")
	if out, err := exec.Command("cc", "-static", "-O2", "-o", helper, src).CombinedOutput(); err != nil {
		t.Fatalf("build %s (needs gcc and libc6-dev): %v\n%s", src, err, out)
	}
	bin := vmtest.Build(t, "./audit", true)
	r := vmtest.GoTestRun(t, k, "./audit", bin, "-test.v", "-test.count=1")
	r.Files["/vm/bin/compat_bpf"] = helper
	r.Env = []string{"CI=true", "BPFGATE_TEST_COMPAT_BPF=/vm/bin/compat_bpf"}
	r.Cmdline = []string{"syscall.x32=y"}
	execAll(t, r, "./audit", []string{"TestCompat", "kernel ABIs: [x86_64 ia32 x32]", "x32 calls recorded"})
}

// execAll runs r, pkg's test binary in a VM, and fails t unless every test
// passed and none skipped, each name in want beginning with Test is among
// those that passed, and each other entry of want is in the output.
func execAll(t *testing.T, r vmtest.Run, pkg string, want []string) {
	t.Helper()
	start := time.Now()
	res, err := r.Exec(context.Background())
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, res.Output)
	}
	s := vmtest.Parse(res.Output)
	k := r.Kernel
	t.Logf("%s on %s: %d passed, %d failed, %d skipped (boot %v, run %v)", pkg, k.Name,
		len(s.Passed), len(s.Failed), len(s.Skipped), res.Boot.Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond))
	if res.ExitCode != 0 || len(s.Failed) > 0 || len(s.Skipped) > 0 {
		t.Fatalf("%s on %s: exit status %d, failed %v, skipped %v:\n%s", pkg, k.Name, res.ExitCode, s.Failed, s.Why, res.Output)
	}
	for _, n := range want {
		if strings.HasPrefix(n, "Test") && !contains(s.Passed, n) {
			t.Errorf("%s on %s: %s did not pass:\n%s", pkg, k.Name, n, res.Output)
		} else if !strings.HasPrefix(n, "Test") && !strings.Contains(res.Output, n) {
			t.Errorf("%s on %s: the output does not say %q:\n%s", pkg, k.Name, n, res.Output)
		}
	}
}
