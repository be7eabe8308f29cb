package containers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// The real tools of test/tools (Debian trixie's libbpf-tools, bpftool,
// xdp-tools) in podman containers, with the built-in profiles: the tools
// root of scripts/tools-rootfs.sh imported as an image, and a hooks.d entry
// that reads no config file (so the built-in profiles apply), selected by
// the io.bpfgate.profile annotation.

type toolsEnv struct {
	image   string
	hooks   string // hooks.d with a hook for the built-in profiles
	objects string // a directory of third-party BPF objects, mounted at /objs
	err     error
}

var (
	toolsOnce   sync.Once
	toolsShared toolsEnv
)

func setupTools(t *testing.T) (*env, *toolsEnv) {
	t.Helper()
	e := setup(t)
	root := testutil.ToolsRoot(t)
	if _, err := os.Stat("/etc/bpfgate/config.yaml"); err == nil {
		testutil.Skip(t, "/etc/bpfgate/config.yaml exists: its profiles replace the built-in ones these tests check")
	}
	toolsOnce.Do(func() { toolsShared.err = toolsShared.build(e, root) })
	if toolsShared.err != nil {
		t.Fatal(toolsShared.err)
	}
	return e, &toolsShared
}

func (te *toolsEnv) build(e *env, root string) error {
	te.image = "localhost/bpfgate-tools:latest"
	start := time.Now()
	// bpftrace's LLVM and the documentation are most of the root and no
	// test here runs them.
	imp := exec.Command("sh", "-c", "tar -C "+root+" -c --exclude=./usr/share/doc --exclude=./usr/share/man "+
		"--exclude='./usr/lib/x86_64-linux-gnu/libLLVM*' --exclude='./usr/lib/x86_64-linux-gnu/libclang*' "+
		"--exclude=./usr/bin/bpftrace . | podman import - "+te.image)
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("podman import the tools root: %w\n%s", err, out)
	}
	fmt.Printf("tools image imported in %v\n", time.Since(start).Round(time.Millisecond))
	te.hooks = filepath.Join(e.dir, "hooks-builtin.d")
	if _, err := run(e.bpfgate, "oci-hook", "hooks-d", "-o", filepath.Join(te.hooks, "bpfgate.json"),
		"--log", filepath.Join(e.dir, "hook-builtin.log")); err != nil {
		return err
	}
	te.objects = filepath.Join(e.dir, "objs")
	if err := os.Mkdir(te.objects, 0o755); err != nil {
		return err
	}
	mod, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cilium/ebpf").Output()
	if err != nil {
		return fmt.Errorf("go list -m github.com/cilium/ebpf: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(mod)), "cmd/bpf2go/testdata/minimal-el.elf"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(te.objects, "minimal-el.elf"), data, 0o644)
}

// runTool runs a shell line in a tools container with a built-in profile.
func (te *toolsEnv) runTool(t *testing.T, e *env, profile string, caps []string, script string) (string, error) {
	t.Helper()
	args := append([]string{"run", "--rm", "--hooks-dir", te.hooks, "--annotation", "io.bpfgate.profile=" + profile,
		"-v", te.objects + ":/objs:ro"}, e.userns()...)
	for _, c := range caps {
		args = append(args, "--cap-add", c)
	}
	args = append(args, te.image, "/bin/bash", "-c", script+" 2>&1")
	start := time.Now()
	out, err := run("podman", args...)
	t.Logf("%s: %s (%v)", profile, script, time.Since(start).Round(time.Millisecond))
	return out, err
}

var (
	toolHistogramRow = regexp.MustCompile(`(?m)^\s*\d+ -> \d+\s*: (\d+)\s`)
	toolXDPDrops     = regexp.MustCompile(`XDP_DROP\s+(\d+) pkts`)
)

// TestPodmanRealTools: for each built-in profile a real tool works in a
// container (attached, counting), and one that needs what the profile
// lacks fails with EPERM.
func TestPodmanRealTools(t *testing.T) {
	e, te := setupTools(t)
	for _, tc := range []struct {
		name    string
		profile string
		caps    []string
		script  string
		// ok reports whether the output shows the tool working.
		ok func(out string) bool
	}{
		{"trace/runqlat", "trace", []string{"perfmon"}, "runqlat-libbpf 1 1",
			func(out string) bool { return testutil.SumMatches(toolHistogramRow, out) > 0 }},
		{"demo/bpftool", "demo", nil,
			"bpftool prog load /objs/minimal-el.elf /sys/fs/bpf/minimal && bpftool prog run pinned /sys/fs/bpf/minimal data_in /objs/minimal-el.elf",
			func(out string) bool { return strings.Contains(out, "Return value: ") }},
		{"net/xdp-filter", "net", []string{"net_admin", "perfmon"},
			"xdp-filter load -m skb lo && xdp-filter port 9999 && " +
				"{ timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999' 2>/dev/null; xdp-filter status; }",
			func(out string) bool { return testutil.SumMatches(toolXDPDrops, out) > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := te.runTool(t, e, tc.profile, tc.caps, tc.script)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !tc.ok(out) {
				t.Fatalf("no events counted under profile %s:\n%s", tc.profile, out)
			}
		})
	}
	t.Run("demo/runqlat fails with EPERM", func(t *testing.T) {
		out, err := te.runTool(t, e, "demo", []string{"perfmon"}, "runqlat-libbpf 1 1")
		const want = "map 'cgroup_map': failed to create: Operation not permitted"
		if err == nil || !strings.Contains(out+err.Error(), want) {
			t.Fatalf("got %v, want a failure with %q:\n%s", err, want, out)
		}
	})
}
