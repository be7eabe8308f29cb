package tools

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/profile"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// env is what every test shares: bpfgate, the tools root, and third-party
// BPF objects copied where the sandboxed workload can read them.
type env struct {
	bpfgate string
	root    string // the trixie root of scripts/tools-rootfs.sh
	minimal string // cilium/ebpf's bpf2go test object: a socket filter and an array
}

var (
	workDir string
	once    sync.Once
	shared  env
	initErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpfgate-tools-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// The workload is an unprivileged host uid: it must reach the objects.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func setup(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := os.Stat("/etc/bpfgate/config.yaml"); err == nil {
		testutil.Skip(t, "/etc/bpfgate/config.yaml exists: its profiles replace the built-in ones these tests check")
	}
	root := testutil.ToolsRoot(t)
	once.Do(func() { initErr = shared.build(root) })
	if initErr != nil {
		t.Fatal(initErr)
	}
	return &shared
}

func (e *env) build(root string) error {
	e.root = root
	e.bpfgate = filepath.Join(workDir, "bpfgate")
	if out, err := exec.Command("go", "build", "-o", e.bpfgate, "../../cmd/bpfgate").CombinedOutput(); err != nil {
		return fmt.Errorf("build bpfgate: %w\n%s", err, out)
	}
	// The module cache is below root's home, which the workload cannot
	// read: copy the object out.
	mod, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cilium/ebpf").Output()
	if err != nil {
		return fmt.Errorf("go list -m github.com/cilium/ebpf: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(mod)), "cmd/bpf2go/testdata/minimal-el.elf"))
	if err != nil {
		return err
	}
	e.minimal = filepath.Join(workDir, "minimal-el.elf")
	return os.WriteFile(e.minimal, data, 0o644)
}

// tool is the command line of a program of the tools root.
func (e *env) tool(path string, args ...string) []string {
	return testutil.ToolCmd(e.root, path, args...)
}

// sh is a shell line that runs a program of the tools root.
func (e *env) sh(path string, args ...string) string {
	return strings.Join(e.tool(path, args...), " ")
}

// run runs argv under `bpfgate run` with the delegation flags and returns
// its combined output and exit status.
func (e *env) run(t *testing.T, flags []string, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append([]string{"run"}, flags...), "--")
	cmd := exec.CommandContext(ctx, e.bpfgate, append(args, argv...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("bpfgate run: %v\n%s", err, out.String())
	}
	t.Logf("%s (%v, exit %d)", strings.Join(argv, " "), time.Since(start).Round(time.Millisecond), code)
	return out.String(), code
}

func builtin(name string) []string { return []string{"--profile", name} }

var (
	histogramRow = regexp.MustCompile(`(?m)^\s*\d+ -> \d+\s*: (\d+)\s`)
	softirqRow   = regexp.MustCompile(`(?m)^[a-z_]+\s+(\d+)\s*$`)
	xdpDrops     = regexp.MustCompile(`XDP_DROP\s+(\d+) pkts`)
	portHits     = regexp.MustCompile(`(?m)^\s*9999\s+dst,tcp,udp\s+(\d+)`)
)

// TestToolsWork: for each built-in profile, real tools that must work
// under it load, attach, and count events. The trace tools trace the
// whole machine (the token's CAP_PERFMON reaches every raw tracepoint),
// whose scheduler and interrupts are never idle for a second.
func TestToolsWork(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		name    string
		profile string
		argv    []string
		// counts returns how many events the output shows.
		counts func(out string) int
	}{
		{"trace/runqlat", "trace", e.tool("usr/sbin/runqlat-libbpf", "1", "1"),
			func(out string) int { return testutil.SumMatches(histogramRow, out) }},
		{"trace/softirqs", "trace", e.tool("usr/sbin/softirqs-libbpf", "1", "1"),
			func(out string) int { return testutil.SumMatches(softirqRow, out) }},
		{"trace/wakeuptime", "trace", e.tool("usr/sbin/wakeuptime-libbpf", "1"),
			func(out string) int { return strings.Count(out, "target:") }},
		// A socket filter and its array map, loaded and pinned by bpftool,
		// then run on a packet with BPF_PROG_TEST_RUN.
		{"demo/bpftool", "demo", []string{"/bin/sh", "-c",
			e.sh("usr/sbin/bpftool", "prog", "load", e.minimal, "/sys/fs/bpf/minimal") + " && " +
				e.sh("usr/sbin/bpftool", "prog", "run", "pinned", "/sys/fs/bpf/minimal", "data_in", e.minimal, "repeat", "100")},
			func(out string) int { return strings.Count(out, "Return value: ") }},
		// xdp-filter (libxdp) attaches to the sandbox's lo in skb mode and
		// drops a connection attempt to a filtered port.
		{"net/xdp-filter", "net", []string{"/bin/bash", "-c", "export LIBXDP_OBJECT_PATH=" + filepath.Join(e.root, "usr/lib/x86_64-linux-gnu/bpf") + "; " +
			e.sh("usr/sbin/xdp-filter", "load", "-m", "skb", "lo") + " && " +
			e.sh("usr/sbin/xdp-filter", "port", "9999") + " && " +
			"{ timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999' 2>/dev/null; " +
			e.sh("usr/sbin/xdp-filter", "status") + "; }"},
			func(out string) int {
				if testutil.SumMatches(portHits, out) == 0 {
					return 0
				}
				return testutil.SumMatches(xdpDrops, out)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, code := e.run(t, builtin(tc.profile), tc.argv...)
			if code != 0 {
				t.Fatalf("exit status %d under --profile %s:\n%s", code, tc.profile, out)
			}
			if n := tc.counts(out); n == 0 {
				t.Fatalf("no events counted under --profile %s:\n%s", tc.profile, out)
			}
		})
	}
}

// without is a built-in profile's delegation, as flags, without one name.
func without(t *testing.T, name string, kind delegateKind, drop string) []string {
	t.Helper()
	p, err := profile.Find(profile.Builtins(), name)
	if err != nil {
		t.Fatal(err)
	}
	lists := map[delegateKind]string{cmds: p.Cmds, maps: p.Maps, progs: p.Progs, attachs: p.Attachs}
	var kept []string
	for _, n := range strings.Split(lists[kind], ":") {
		if n != drop {
			kept = append(kept, n)
		}
	}
	if len(kept) == len(strings.Split(lists[kind], ":")) {
		t.Fatalf("profile %s has no %s %s", name, kind, drop)
	}
	lists[kind] = strings.Join(kept, ":")
	return []string{"--cmds", lists[cmds], "--maps", lists[maps], "--progs", lists[progs], "--attachs", lists[attachs]}
}

type delegateKind string

const (
	cmds    delegateKind = "cmds"
	maps    delegateKind = "maps"
	progs   delegateKind = "progs"
	attachs delegateKind = "attachs"
)

// TestToolsNeedWhatTheProfileGives: a tool that needs a delegation the
// profile lacks fails, with EPERM where the kernel refuses the token; and
// the trace profile's entries for libbpf's probes and bcc's maps are
// needed (without them runqlat fails).
func TestToolsNeedWhatTheProfileGives(t *testing.T) {
	e := setup(t)
	xdpFilter := []string{"/bin/bash", "-c", "export LIBXDP_OBJECT_PATH=" + filepath.Join(e.root, "usr/lib/x86_64-linux-gnu/bpf") + "; " +
		e.sh("usr/sbin/xdp-filter", "load", "-m", "skb", "lo")}
	runqlat := e.tool("usr/sbin/runqlat-libbpf", "1", "1")
	for _, tc := range []struct {
		name  string
		flags []string
		argv  []string
		want  string
	}{
		// demo has no cgroup_array, no raw_tracepoint programs.
		{"runqlat under demo", builtin("demo"), runqlat, "map 'cgroup_map': failed to create: Operation not permitted"},
		{"xdp-filter under trace", builtin("trace"), xdpFilter, "Couldn't attach XDP program on iface 'lo': Operation not permitted"},
		{"xdp-filter under demo", builtin("demo"), xdpFilter, "Couldn't attach XDP program on iface 'lo': Operation not permitted"},
		{"runqlat under net", builtin("net"), runqlat, "Operation not permitted"},
		// bcc's tools declare a cgroup_array even when no cgroup filter is
		// asked for.
		{"runqlat under trace without cgroup_array", without(t, "trace", maps, "cgroup_array"), runqlat,
			"map 'cgroup_map': failed to create: Operation not permitted"},
		// libbpf's probe for global data loads a socket filter with the
		// token; when it fails libbpf skips .rodata and the program refers
		// to a map that was never made.
		{"runqlat under trace without socket_filter", without(t, "trace", progs, "socket_filter"), runqlat,
			"prog 'handle_sched_wakeup': BPF program load failed: Invalid argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, code := e.run(t, tc.flags, tc.argv...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit status %d, want a failure with %q:\n%s", code, tc.want, out)
			}
		})
	}
}

// TestNeverUnderToken: what no delegation reaches, whatever the profile
// (docs/profiles.md says why for each).
func TestNeverUnderToken(t *testing.T) {
	e := setup(t)
	bpftool := func(args ...string) []string { return e.tool("usr/sbin/bpftool", args...) }
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		// Perf buffers: perf_event_open(PERF_COUNT_SW_BPF_OUTPUT) on every
		// CPU needs CAP_PERFMON in the initial user namespace.
		{"perf buffer (runqslower)", e.tool("usr/sbin/runqslower-libbpf", "10000"), "failed to open perf buffer: -13"},
		{"perf buffer (bpftrace)", []string{"/bin/sh", "-c", "exec " + e.sh("usr/bin/bpftrace", "-e") + " 'rawtracepoint:sched_switch { @ = count(); }'"},
			"Failed to open perf buffer"},
		// Tracepoints through perf_event_open need their id from tracefs,
		// which is root's.
		{"tracepoint (execsnoop)", e.tool("usr/sbin/execsnoop-libbpf"),
			"failed to determine tracepoint 'syscalls/sys_enter_execve' perf event ID: No such file or directory"},
		// bpftool's map create passes no token.
		{"bpftool map create", bpftool("map", "create", "/sys/fs/bpf/m", "type", "hash", "key", "4", "value", "4", "entries", "8", "name", "m"),
			"map create failed: Operation not permitted"},
		// Walking ids (BPF_PROG_GET_NEXT_ID) needs CAP_SYS_ADMIN in the
		// initial user namespace.
		{"bpftool prog show", bpftool("prog", "show"), "can't get next program: Operation not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, code := e.run(t, builtin("trace"), tc.argv...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit status %d, want a failure with %q:\n%s", code, tc.want, out)
			}
		})
	}
}
