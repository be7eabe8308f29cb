package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// libbpfInstall says how to get what the libbpf tests need on Debian 12.
const libbpfInstall = "install a C compiler and libbpf-dev 1.4+ and bpftool 7.4+ (Debian 12: apt-get install -t bookworm-backports libbpf-dev bpftool)"

// buildLibbpfWorkload compiles testdata/libbpf/loader.c against the system
// libbpf into a directory the workload can read, next to the committed BPF
// object, and checks that the libbpf it links knows tokens (1.4+).
func buildLibbpfWorkload(t *testing.T) (loader, object string) {
	t.Helper()
	dir := testutil.PublicDir(t)
	loader, object = filepath.Join(dir, "loader"), filepath.Join(dir, "count.bpf.o")
	out, err := exec.Command("cc", "-O2", "-Wall", "-o", loader, "testdata/libbpf/loader.c", "-lbpf").CombinedOutput()
	if err != nil {
		testutil.Skip(t, "cannot build the libbpf loader ("+strings.TrimSpace(string(out))+"): "+libbpfInstall)
	}
	obj, err := os.ReadFile("testdata/libbpf/count.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(object, obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loader, 0o755); err != nil {
		t.Fatal(err)
	}
	res := decodeLoader(t, mustOutput(t, loader, object))
	if !atLeast(res["libbpf"], 1, 4) {
		testutil.Skip(t, "libbpf "+res["libbpf"]+" predates tokens: "+libbpfInstall)
	}
	if res["result"] != "ok" { // as root on the host no token is needed
		t.Fatalf("the loader fails even as host root: %v", res)
	}
	return loader, object
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

func decodeLoader(t *testing.T, out string) map[string]string {
	t.Helper()
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("loader output %q: %v", out, err)
	}
	return res
}

// atLeast reports whether version "MAJOR.MINOR[.PATCH]" is at least major.minor.
func atLeast(version string, major, minor int) bool {
	f := strings.SplitN(version, ".", 3)
	if len(f) < 2 {
		return false
	}
	a, err1 := strconv.Atoi(f[0])
	b, err2 := strconv.Atoi(f[1])
	return err1 == nil && err2 == nil && (a > major || a == major && b >= minor)
}

// TestRunLibbpfWorkload runs an unmodified libbpf (1.4+) loader under
// bpfgate run: libbpf must find the token at /sys/fs/bpf by itself.
func TestRunLibbpfWorkload(t *testing.T) {
	testutil.RequireRoot(t)
	loader, object := buildLibbpfWorkload(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"demo profile", []string{"--profile", "demo", "--", loader, object}, "ok"},
		// libbpf's own switch for the implicit token: with it off, the same
		// workload has no rights at all, so the success above was the token.
		{"token disabled", []string{"--profile", "demo", "--", "env", "LIBBPF_BPF_TOKEN_PATH=", loader, object}, "EPERM"},
		{"token path given", []string{"--profile", "demo", "--", "env", "LIBBPF_BPF_TOKEN_PATH=/sys/fs/bpf", loader, object}, "ok"},
		{"socket filters not delegated", []string{"--cmds", "map_create,prog_load,btf_load", "--maps", "hash", "--progs", "xdp", "--attachs", "xdp", "--", loader, object}, "EPERM"},
		{"hash maps not delegated", []string{"--cmds", "map_create,prog_load,btf_load", "--maps", "array", "--progs", "socket_filter", "--attachs", "cgroup_inet_ingress", "--", loader, object}, "EPERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bpfgate(t, append([]string{"run", "-q"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			if got := decodeLoader(t, r.stdout); got["result"] != tc.want {
				t.Fatalf("got %v, want result %q", got, tc.want)
			}
		})
	}
}

var bpftoolLibbpf = regexp.MustCompile(`using libbpf v(\d+\.\d+)`)

// TestRunBpftool: Debian's bpftool, a libbpf program nobody changed for
// bpfgate, loads and pins a program in the delegated bpffs.
func TestRunBpftool(t *testing.T) {
	testutil.RequireRoot(t)
	_, object := buildLibbpfWorkload(t)
	version, err := exec.Command("bpftool", "version").Output()
	if err != nil {
		testutil.Skip(t, "no bpftool: "+libbpfInstall)
	}
	if m := bpftoolLibbpf.FindSubmatch(version); m == nil || !atLeast(string(m[1]), 1, 4) {
		testutil.Skip(t, "bpftool built on a libbpf without tokens ("+strings.TrimSpace(string(version))+"): "+libbpfInstall)
	}
	r := bpfgate(t, "run", "-q", "--profile", "demo", "--", "sh", "-c",
		"bpftool prog load "+object+" /sys/fs/bpf/count 2>/dev/null && bpftool -j prog show pinned /sys/fs/bpf/count")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var prog struct {
		ID   int    `json:"id"`
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &prog); err != nil {
		t.Fatalf("%v: %q", err, r.stdout)
	}
	if prog.Type != "socket_filter" || prog.ID == 0 || !strings.HasPrefix("count_packets", prog.Name) {
		t.Fatalf("pinned program: %+v", prog)
	}
}
