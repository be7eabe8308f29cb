package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// profileTool is a real program `bpfgate profile` is tried on. prepare
// builds or finds it (skipping, with how to install it, when it cannot)
// and returns its command line, and a --check that tells success from
// failure when the exit status does not.
type profileTool struct {
	name    string
	prepare func(t *testing.T) (args []string, check string)
}

// profileTools are the programs of TestProfileRealTools. Add a tool here.
var profileTools = []profileTool{
	{"libbpf loader", func(t *testing.T) ([]string, string) {
		// Ours, but libbpf's own feature probes are real.
		loader, object := buildLibbpfWorkload(t)
		return []string{loader, object}, `grep -q '"result":"ok"'`
	}},
	{"bpftool prog load", func(t *testing.T) ([]string, string) {
		_, object := buildLibbpfWorkload(t)
		requireBpftool(t)
		return []string{"bpftool", "prog", "load", object, "/sys/fs/bpf/count"}, ""
	}},
	{"bpftool iter pin", func(t *testing.T) ([]string, string) {
		requireBpftool(t)
		object := publicCopy(t, "../../examples/preload/iterators_bpfel.o")
		return []string{"sh", "-c", "bpftool iter pin " + object + " /sys/fs/bpf/it && cat /sys/fs/bpf/it"}, "grep -q max_entries"
	}},
	// Programs nobody here wrote, from the cached trixie root
	// (scripts/tools-rootfs.sh): one per built-in profile.
	{"runqlat (libbpf-tools)", func(t *testing.T) ([]string, string) {
		root := testutil.ToolsRoot(t)
		// The histogram has rows with counts: attached, and it saw events.
		return testutil.ToolCmd(root, "usr/sbin/runqlat-libbpf", "1", "1"), `grep -Eq '^ +[0-9]+ -> [0-9]+ +: [1-9]'`
	}},
	{"xdp-filter (xdp-tools)", func(t *testing.T) ([]string, string) {
		root := testutil.ToolsRoot(t)
		tool := func(args ...string) string {
			return strings.Join(testutil.ToolCmd(root, "usr/sbin/xdp-filter", args...), " ")
		}
		// Attached to the sandbox's lo, it drops and counts a SYN to a
		// filtered port.
		return []string{"/bin/bash", "-c", "export LIBXDP_OBJECT_PATH=" + filepath.Join(root, "usr/lib/x86_64-linux-gnu/bpf") + "; " +
			tool("load", "-m", "skb", "lo") + " && " + tool("port", "9999") + " && " +
			"{ timeout 0.2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999' 2>/dev/null; " + tool("status") + "; }"}, `grep -Eq 'XDP_DROP +[1-9]'`
	}},
	{"bpftool prog run (cilium/ebpf's minimal object)", func(t *testing.T) ([]string, string) {
		root := testutil.ToolsRoot(t)
		mod, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-m", "-f", "{{.Dir}}", "github.com/cilium/ebpf").Output()
		if err != nil {
			t.Fatal(err)
		}
		object := publicCopy(t, filepath.Join(strings.TrimSpace(string(mod)), "cmd/bpf2go/testdata/minimal-el.elf"))
		bpftool := func(args ...string) string {
			return strings.Join(testutil.ToolCmd(root, "usr/sbin/bpftool", args...), " ")
		}
		return []string{"/bin/sh", "-c", bpftool("prog", "load", object, "/sys/fs/bpf/minimal") + " && " +
			bpftool("prog", "run", "pinned", "/sys/fs/bpf/minimal", "data_in", object)}, "grep -q 'Return value: '"
	}},
	{"cilium/ebpf iterator", func(t *testing.T) ([]string, string) {
		bin := buildCiliumIter(t)
		object := publicCopy(t, "../../examples/preload/iterators_bpfel.o")
		return []string{bin, object, "dump_bpf_map"}, "grep -q max_entries"
	}},
}

func requireBpftool(t *testing.T) {
	t.Helper()
	version, err := exec.Command("bpftool", "version").Output()
	if err != nil {
		testutil.Skip(t, "no bpftool: "+libbpfInstall)
	}
	if m := bpftoolLibbpf.FindSubmatch(version); m == nil || !atLeast(string(m[1]), 1, 4) {
		testutil.Skip(t, "bpftool built on a libbpf without tokens: "+libbpfInstall)
	}
}

// publicCopy copies a file where the workload can read it.
func publicCopy(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(testutil.PublicDir(t), filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// buildCiliumIter builds testdata/ciliumiter, a cilium/ebpf program.
func buildCiliumIter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(testutil.PublicDir(t), "ciliumiter")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goTool, "build", "-o", bin, "./testdata/ciliumiter").CombinedOutput(); err != nil {
		t.Fatalf("build the cilium/ebpf workload: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// profileOut is the part of `profile --format json` the tests read.
type profileOut struct {
	Cmds      []string `json:"allowed_cmds"`
	Maps      []string `json:"allowed_maps"`
	Progs     []string `json:"allowed_progs"`
	Attachs   []string `json:"allowed_attachs"`
	Caps      []string `json:"caps"`
	Options   string   `json:"options"`
	Verified  bool     `json:"verified"`
	Minimized bool     `json:"minimized"`
	NotJudged []string `json:"not_judged"`
	Recorded  struct {
		Cmds    []string `json:"allowed_cmds"`
		Maps    []string `json:"allowed_maps"`
		Progs   []string `json:"allowed_progs"`
		Attachs []string `json:"allowed_attachs"`
		Caps    []string `json:"caps"`
	} `json:"recorded"`
}

func (p profileOut) items() []string {
	return prefixed(p.Cmds, p.Maps, p.Progs, p.Attachs, p.Caps)
}

func (p profileOut) recorded() []string {
	r := p.Recorded
	return prefixed(r.Cmds, r.Maps, r.Progs, r.Attachs, r.Caps)
}

func prefixed(lists ...[]string) []string {
	var out []string
	for i, l := range lists {
		for _, s := range l {
			out = append(out, [...]string{"cmd ", "map ", "prog ", "attach ", ""}[i]+s)
		}
	}
	return out
}

func profileJSONOf(t *testing.T, args ...string) profileOut {
	t.Helper()
	r := bpfgate(t, append([]string{"profile", "--format", "json"}, args...)...)
	var p profileOut
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("profile %v: %v: %+v", args, err, r)
	}
	if r.code != 0 || !p.Verified {
		t.Fatalf("profile %v: exit %d, verified %v: %+v", args, r.code, p.Verified, r)
	}
	return p
}

// withCheck runs a tool's check on its output, as --check does.
func withCheck(t *testing.T, check, stdout string) bool {
	t.Helper()
	if check == "" {
		return true
	}
	c := exec.Command("/bin/sh", "-c", check)
	c.Stdin = strings.NewReader(stdout)
	return c.Run() == nil
}

// TestProfileRealTools: for programs nobody here wrote (or whose library
// probes are real), `bpfgate profile` prints a delegation that runs them,
// and --minimize shrinks it.
func TestProfileRealTools(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range profileTools {
		t.Run(tool.name, func(t *testing.T) {
			args, check := tool.prepare(t)
			flags := []string{}
			if check != "" {
				flags = append(flags, "--check", check)
			}
			raw := profileJSONOf(t, append(append(flags, "--"), args...)...)
			if len(raw.Cmds) == 0 || !slices.Equal(raw.items(), raw.recorded()) || raw.Minimized {
				t.Fatalf("raw record: %+v", raw)
			}
			min := profileJSONOf(t, append(append(flags, "--minimize", "--"), args...)...)
			if !min.Minimized || len(min.items()) >= len(min.recorded()) {
				t.Errorf("--minimize did not shrink %v: %v", min.recorded(), min.items())
			}
			for _, item := range min.items() {
				if !slices.Contains(min.recorded(), item) {
					t.Errorf("minimized %v has %s, which was not recorded (%v)", min.items(), item, min.recorded())
				}
			}
			t.Logf("recorded %v\nminimized %v\nnot judged %v", min.recorded(), min.items(), min.NotJudged)

			// The printed flags run it with bpfgate run, deterministically.
			r := bpfgate(t, append(append([]string{"profile"}, flags...), append([]string{"--minimize", "--"}, args...)...)...)
			again := bpfgate(t, append(append([]string{"profile"}, flags...), append([]string{"--minimize", "--"}, args...)...)...)
			if r.code != 0 || r.stdout != again.stdout {
				t.Fatalf("flags: %+v\nagain: %+v", r, again)
			}
			run := bpfgate(t, append(append(append([]string{"run", "-q"}, strings.Fields(r.stdout)...), "--"), args...)...)
			if run.code != 0 || !withCheck(t, check, run.stdout) {
				t.Errorf("bpfgate run %s -- %v: %+v", strings.TrimSpace(r.stdout), args, run)
			}
		})
	}
}

// TestProfileYAML: the yaml output is a config file bpfgate run takes.
func TestProfileYAML(t *testing.T) {
	testutil.RequireRoot(t)
	loader, object := buildLibbpfWorkload(t)
	check := `grep -q '"result":"ok"'`
	r := bpfgate(t, "profile", "--minimize", "--format", "yaml", "--name", "loader", "--check", check, "--", loader, object)
	if r.code != 0 || !strings.Contains(r.stdout, "profiles:\n  loader:\n") || !strings.Contains(r.stdout, "# not judged: prog_load socket_filter") {
		t.Fatalf("%+v", r)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	run := bpfgate(t, "--config", cfg, "run", "-q", "--profile", "loader", "--", loader, object)
	if run.code != 0 || !withCheck(t, check, run.stdout) {
		t.Fatalf("run with the recorded profile: %+v", run)
	}
}

func TestProfileInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--format", "xml", "--", "true"}, 1, `--format "xml": want flags, yaml or json`},
		{[]string{"--name", "a b", "--", "true"}, 1, `--name "a b": want letters`},
		{[]string{"--timeout", "0s", "--", "true"}, 1, "--timeout 0s: want a positive duration"},
		{[]string{"--check", " ", "--", "true"}, 1, "--check: give a shell command"},
		{[]string{"--maps", "hsah", "--", "true"}, 1, "did you mean hash"},
		{[]string{"--net", "bridge", "--", "true"}, 1, `--net "bridge": want none or host`},
		{[]string{"--minimize"}, 1, "requires at least 1 arg"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := bpfgate(t, append([]string{"profile"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("got %+v, want exit %d and %q", r, tc.code, tc.want)
			}
		})
	}
	r := bpfgate(t, "profile", "-j", "--format", "xml", "--", "true")
	if r.code != 1 || !strings.HasPrefix(r.stdout, `{"error":"--json and --format xml disagree`) {
		t.Errorf("json error: %+v", r)
	}
}

func TestProfileWorkloadFailures(t *testing.T) {
	testutil.RequireRoot(t)
	r := bpfgate(t, "profile", "--", "/nonexistent/tool")
	if r.code != 127 || !strings.Contains(r.stderr, "/nonexistent/tool") {
		t.Errorf("not found: %+v", r)
	}
	r = bpfgate(t, "profile", "--", "sh", "-c", "echo broken >&2; exit 3")
	if r.code != 1 || !strings.Contains(r.stderr, "sh fails even with the broad delegation (exit status 3)") || !strings.Contains(r.stderr, "broken") {
		t.Errorf("failing command: %+v", r)
	}
	r = bpfgate(t, "profile", "--check", "grep -q never", "--", "echo", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "--check failed") {
		t.Errorf("failing check: %+v", r)
	}
	r = bpfgate(t, "profile", "--timeout", "300ms", "--", "sleep", "10")
	if r.code != 1 || !strings.Contains(r.stderr, "killed after --timeout 300ms") {
		t.Errorf("timeout: %+v", r)
	}
	// No token used: nothing to delegate, and it says so.
	r = bpfgate(t, "profile", "--minimize", "--", "true")
	if r.code != 0 || r.stdout != "\n" || !strings.Contains(r.stderr, "used no token") {
		t.Errorf("no token: %+v", r)
	}
}
