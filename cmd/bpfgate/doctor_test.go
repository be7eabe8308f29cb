package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

type doctorOut struct {
	Pid         int      `json:"pid"`
	BPFFS       string   `json:"bpffs"`
	AllowedMaps []string `json:"allowed_maps"`
	Findings    []struct {
		Check  string `json:"check"`
		Status string `json:"status"`
		Seen   string `json:"seen"`
		Fix    string `json:"fix"`
	} `json:"findings"`
	ExitCode *int   `json:"exit_code"`
	Failed   bool   `json:"failed"`
	Error    string `json:"error"`
}

func doctorJSONOf(t *testing.T, args ...string) (doctorOut, result) {
	t.Helper()
	r := bpfgate(t, append([]string{"doctor", "--json"}, args...)...)
	var out doctorOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: not one JSON document: %v: %q (stderr %q)", args, err, r.stdout, r.stderr)
	}
	return out, r
}

func (d doctorOut) status(check string) string {
	for _, f := range d.Findings {
		if f.Check == check {
			return f.Status
		}
	}
	return ""
}

func TestDoctorCommand(t *testing.T) {
	testutil.RequireRoot(t)
	out, r := doctorJSONOf(t, "--profile", "demo", "--", "sh", "-c", "echo to-stdout; exit 0")
	if r.code != 0 || out.Failed || out.ExitCode == nil || *out.ExitCode != 0 || out.Pid == 0 {
		t.Fatalf("exit %d: %+v\nstderr: %s", r.code, out, r.stderr)
	}
	if out.BPFFS != "/sys/fs/bpf" || strings.Join(out.AllowedMaps, ",") != "hash,array" {
		t.Errorf("bpffs %q, maps %v", out.BPFFS, out.AllowedMaps)
	}
	// Under --json the command's stdout goes to stderr: stdout is the report's.
	if !strings.Contains(r.stderr, "to-stdout") {
		t.Errorf("stderr: %q", r.stderr)
	}
	for _, c := range []string{"kernel", "bpffs", "token", "capabilities", "user_namespace", "seccomp", "command"} {
		if s := out.status(c); s != "ok" {
			t.Errorf("%s: %q", c, s)
		}
	}

	out, r = doctorJSONOf(t, "--cmds", "map_create,prog_load", "--maps", "hash", "--progs", "socket_filter", "--", "sh", "-c", "exit 3")
	if r.code != 1 || !out.Failed || out.ExitCode == nil || *out.ExitCode != 3 {
		t.Fatalf("exit %d: %+v", r.code, out)
	}
	if out.status("socket_filter_probe") != "fail" || out.status("command") != "fail" {
		t.Errorf("%+v", out)
	}

	// Text.
	r = bpfgate(t, "doctor", "--profile", "demo", "--", "true")
	if r.code != 0 || !strings.Contains(r.stdout, "ok   seccomp: 2 filter(s), read from the process") ||
		!strings.Contains(r.stdout, "bpfgate's own recorder") {
		t.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

func TestDoctorPid(t *testing.T) {
	testutil.RequireRoot(t)
	// This test runs in the host's user namespace, with no delegated bpffs.
	out, r := doctorJSONOf(t, "--pid", strconv.Itoa(os.Getpid()))
	if r.code != 1 || !out.Failed || out.Pid != os.Getpid() {
		t.Fatalf("exit %d: %+v", r.code, out)
	}
	if out.status("user_namespace") != "fail" || out.status("token") != "fail" {
		t.Errorf("%+v", out)
	}
}

func TestDoctorUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pid", "1", "--container", "x"}, "give one of --pid, --container or -- COMMAND"},
		{[]string{"--pid", "1", "--", "true"}, "give one of --pid, --container or -- COMMAND"},
		{[]string{"--profile", "demo"}, "the delegation flags describe the sandbox of -- COMMAND"},
		{[]string{"--", "true"}, "nothing to delegate"},
		{[]string{"--container", "-x"}, "want a container id or name"},
	} {
		out, r := doctorJSONOf(t, tc.args...)
		if r.code == 0 || !strings.Contains(out.Error, tc.want) {
			t.Errorf("%v: exit %d, %q, want %q", tc.args, r.code, out.Error, tc.want)
		}
	}
}

// TestDoctorNoContainerTools: without podman, runc or crun on PATH the
// error says so (the real lookups are tested in test/containers, in a
// mount namespace where podman's state is the run's own).
func TestDoctorNoContainerTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	out, r := doctorJSONOf(t, "--container", "web")
	const want = "container web: no container engine or runtime knows the container (neither podman, runc nor crun is installed)"
	if r.code == 0 || out.Error != want {
		t.Errorf("exit %d: %q, want %q", r.code, out.Error, want)
	}
}

// TestDoctorProfileGap: doctor records what a real tool (bcc's runqlat)
// does with its token and names what the profile lacks, with the flags that
// add it; under the profile that fits, it finds no gap.
func TestDoctorProfileGap(t *testing.T) {
	testutil.RequireRoot(t)
	runqlat := testutil.ToolCmd(testutil.ToolsRoot(t), "usr/sbin/runqlat-libbpf", "1", "1")
	gap := func(out doctorOut) (status, seen, fix string) {
		for _, f := range out.Findings {
			if f.Check == "delegation_gap" {
				return f.Status, f.Seen, f.Fix
			}
		}
		return "", "", ""
	}
	out, r := doctorJSONOf(t, append([]string{"--profile", "demo", "--"}, runqlat...)...)
	status, seen, fix := gap(out)
	if r.code != 1 || status != "fail" || out.status("command") != "fail" {
		t.Fatalf("exit %d, gap %q %q: %+v", r.code, status, seen, out)
	}
	// runqlat stops at its first refusal: the cgroup_array map it creates
	// before any program.
	for _, want := range []string{"cgroup_array"} {
		if !strings.Contains(seen, want) || !strings.Contains(fix, want) {
			t.Errorf("the gap does not name %s: seen %q, fix %q", want, seen, fix)
		}
	}
	out, r = doctorJSONOf(t, append([]string{"--profile", "trace", "--"}, runqlat...)...)
	if status, seen, _ := gap(out); r.code != 0 || status != "ok" {
		t.Fatalf("under trace: exit %d, gap %q %q: %+v", r.code, status, seen, out)
	}
}
