package containers

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type doctorReport struct {
	Pid       int    `json:"pid"`
	Container string `json:"container"`
	Findings  []struct {
		Check  string `json:"check"`
		Status string `json:"status"`
		Seen   string `json:"seen"`
		Fix    string `json:"fix"`
	} `json:"findings"`
	Failed bool   `json:"failed"`
	Error  string `json:"error"`
}

// doctor runs bpfgate doctor --json with args and decodes its report.
func (e *env) doctor(t *testing.T, args ...string) doctorReport {
	t.Helper()
	out, err := run(e.bpfgate, append([]string{"--config", e.config, "doctor", "--json"}, args...)...)
	t.Logf("doctor %v: %s", args, out)
	var rep doctorReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("doctor %v: %v: %q (%v)", args, jerr, out, err)
	}
	if rep.Error != "" {
		t.Fatalf("doctor %v: %s", args, rep.Error)
	}
	if (err != nil) != rep.Failed {
		t.Errorf("doctor %v: failed %v, but the command returned %v", args, rep.Failed, err)
	}
	return rep
}

// expectFinding checks a finding's status and that its text says each of says.
func (r doctorReport) expect(t *testing.T, check, status string, says ...string) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Check != check {
			continue
		}
		if f.Status != status {
			t.Errorf("%s: %s, want %s: %s (fix: %s)", check, f.Status, status, f.Seen, f.Fix)
		}
		for _, s := range says {
			if !strings.Contains(f.Seen+" fix: "+f.Fix, s) {
				t.Errorf("%s: %q does not say %q", check, f.Seen+" fix: "+f.Fix, s)
			}
		}
		return
	}
	t.Errorf("no %s finding: %+v", check, r.Findings)
}

// podmanStart starts a container that sleeps, and removes it at the end.
func (e *env) podmanStart(t *testing.T, flags ...string) string {
	t.Helper()
	args := append([]string{"run", "-d"}, flags...)
	out, err := e.runPodman(append(args, e.image, "sleep", "600")...)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() {
		// podman 4.3 sometimes finds the container's shm still busy right
		// after stopping it (seen here): try again.
		var err error
		for try := 0; try < 10; try++ {
			if _, err = e.runPodman("rm", "-f", "-t", "0", id); err == nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Error(err)
	})
	return id
}

const seccompFix = "--security-opt seccomp=/etc/bpfgate/seccomp.json"

// TestDoctorContainers: doctor names the cause for containers that each
// lack one thing, and finds nothing wrong with one that has it all.
func TestDoctorContainers(t *testing.T) {
	e := setup(t)
	seccomp := []string{"--security-opt", "seccomp=" + e.seccomp}
	for _, tc := range []struct {
		name  string
		flags []string
		check func(t *testing.T, r doctorReport)
	}{
		{"everything a token needs", append(e.userns(), "--device", "bpfgate.dev/bpf=demo"), func(t *testing.T, r doctorReport) {
			if r.Failed {
				t.Errorf("failed: %+v", r.Findings)
			}
			r.expect(t, "bpffs", "ok", "/sys/fs/bpf: delegate_cmds=map_create:prog_load:btf_load")
			r.expect(t, "token", "ok", "creates a token from /sys/fs/bpf")
			// The filter runc made from the profile with libseccomp, read
			// from the container's init.
			r.expect(t, "seccomp", "ok", "read from the process: bpf(2) would allow")
			r.expect(t, "seccomp_config", "ok", "SCMP_ACT_ALLOW")
		}},
		// Debian 12's default profile fails bpf(2) without CAP_SYS_ADMIN.
		{"without bpfgate's seccomp profile", []string{autoUserNS, "--cap-add", "bpf"}, func(t *testing.T, r doctorReport) {
			r.expect(t, "seccomp", "fail", "read from the process: bpf(2) would fail with EPERM", seccompFix)
			r.expect(t, "seccomp_config", "fail", "bpf(2) would fail with EPERM", seccompFix)
			r.expect(t, "capabilities", "ok")
			r.expect(t, "user_namespace", "ok")
			r.expect(t, "bpffs", "fail", "--device bpfgate.dev/bpf=PROFILE")
		}},
		{"without CAP_BPF", append([]string{autoUserNS}, seccomp...), func(t *testing.T, r doctorReport) {
			r.expect(t, "capabilities", "fail", "not even in its bounding set: CAP_BPF", "podman run --cap-add bpf")
			r.expect(t, "user_namespace", "ok")
		}},
		{"without a user namespace", append([]string{"--cap-add", "bpf"}, seccomp...), func(t *testing.T, r doctorReport) {
			r.expect(t, "user_namespace", "fail", "shares the host's user namespace", "podman run --userns=auto")
			r.expect(t, "token", "fail", "host's user namespace")
			r.expect(t, "seccomp", "ok")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.podmanStart(t, tc.flags...)
			r := e.doctor(t, "--container", id)
			if r.Container != id || r.Pid == 0 {
				t.Errorf("container %q pid %d, want %q", r.Container, r.Pid, id)
			}
			tc.check(t, r)
			// doctor leaves the container running, untraced.
			if out, err := run("podman", "exec", id, "grep", "TracerPid", "/proc/1/status"); err != nil || !strings.Contains(out, "TracerPid:\t0") {
				t.Errorf("after doctor: %q %v", out, err)
			}
		})
	}
}

// TestDoctorRuncContainer: a runc container is found with runc state.
func TestDoctorRuncContainer(t *testing.T) {
	e := setup(t)
	dir := e.bundle(t, "demo", true)
	var spec map[string]any
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec["process"].(map[string]any)["args"] = []string{"/bin/sleep", "600"}
	if data, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(e.dir, "runc")
	id := "bpfgate-e2e-doctor-" + filepath.Base(filepath.Dir(dir))
	// runc create hands the container its stdio: /dev/null, so that
	// nothing holds this test's pipes.
	if err := exec.Command("runc", "--root", root, "create", "--bundle", dir, id).Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	t.Cleanup(func() {
		if _, err := run("runc", "--root", root, "delete", "-f", id); err != nil {
			t.Error(err)
		}
	})
	if _, err := run("runc", "--root", root, "start", id); err != nil {
		t.Fatal(err)
	}
	r := e.doctor(t, "--container", id, "--runtime-root", root)
	r.expect(t, "bpffs", "ok", "/sys/fs/bpf: delegate_cmds=map_create:prog_load:btf_load")
	r.expect(t, "token", "ok")
	r.expect(t, "seccomp", "ok", "no seccomp filter")
	r.expect(t, "seccomp_config", "ok", "no seccomp filter")
}
