package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/k8s/nri"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

// startNRI runs `bpfgate k8s nri` on the harness's containerd until the
// test ends, once it has registered.
func (e *env) startNRI(t *testing.T) {
	t.Helper()
	logPath := filepath.Join(e.dir, fmt.Sprintf("nri-%d.log", nextPod.Add(1)))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(e.bpfgate, "--config", e.config, "k8s", "nri", "--socket", e.cd.NRISocket,
		"--plugin-name", "bpfgate-test", "--log", e.hookLog)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test die, the plugin must not go on reconnecting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bpfgate k8s nri's log:\n%s", readFile(logPath))
		}
		// A clean shutdown: SIGTERM, and the plugin returns 0.
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("bpfgate k8s nri on SIGTERM: %v\n%s", err, readFile(logPath))
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("bpfgate k8s nri did not stop in 10 s on SIGTERM\n%s", readFile(logPath))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readFile(logPath), "registered with the runtime") {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("bpfgate k8s nri exited: %v\n%s", err, readFile(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfgate k8s nri did not register in 20 s\n%s", readFile(logPath))
		}
	}
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// annotatePod sets annotations on the pod config in dir.
func annotatePod(t *testing.T, dir string, annots map[string]string) {
	t.Helper()
	path := filepath.Join(dir, "pod.json")
	var pc map[string]any
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &pc)
	}
	if err != nil {
		t.Fatal(err)
	}
	pc["annotations"] = annots
	if data, err = json.Marshal(pc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// localhostSeccomp gives the container in dir a Localhost seccomp profile.
func localhostSeccomp(t *testing.T, dir, profileJSON string) {
	t.Helper()
	prof := filepath.Join(dir, "seccomp.json")
	if err := os.WriteFile(prof, []byte(profileJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "container.json")
	var cc map[string]any
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &cc)
	}
	if err != nil {
		t.Fatal(err)
	}
	sc := cc["linux"].(map[string]any)["security_context"].(map[string]any)
	sc["seccomp"] = map[string]any{"profile_type": 2, "localhost_ref": prof}
	if data, err = json.Marshal(cc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runtimeSpec is the part of a container's OCI config the tests look at.
type runtimeSpec struct {
	Annotations map[string]string `json:"annotations"`
	Hooks       struct {
		CreateRuntime []struct {
			Path string   `json:"path"`
			Args []string `json:"args"`
		} `json:"createRuntime"`
	} `json:"hooks"`
	Linux struct {
		Seccomp *struct {
			Syscalls []struct {
				Names  []string `json:"names"`
				Action string   `json:"action"`
			} `json:"syscalls"`
		} `json:"seccomp"`
	} `json:"linux"`
}

func (e *env) runtimeSpec(t *testing.T, s *started) runtimeSpec {
	t.Helper()
	out, err := e.cd.Crictl("inspect", "--output", "json", s.ctr)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Info struct {
			RuntimeSpec runtimeSpec `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	return info.Info.RuntimeSpec
}

// nriCheck runs ebpfcheck in a pod with the annotations and returns its
// report and the container's OCI config.
func (e *env) nriCheck(t *testing.T, p pod, annots map[string]string, seccompJSON string) (map[string]string, runtimeSpec) {
	t.Helper()
	p.command = []string{"/bin/ebpfcheck"}
	dir := e.configs(t, p)
	annotatePod(t, dir, annots)
	if seccompJSON != "" {
		localhostSeccomp(t, dir, seccompJSON)
	}
	s, err := e.start(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.remove(t, s)
	out := e.output(t, s)
	spec := e.runtimeSpec(t, s)
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ebpfcheck: %v: %q", err, out)
	}
	return res, spec
}

// bpfgateHooks are the container's createRuntime hooks that run bpfgate.
func (e *env) bpfgateHooks(spec runtimeSpec) []string {
	var hooks []string
	for _, h := range spec.Hooks.CreateRuntime {
		if h.Path == e.bpfgate {
			hooks = append(hooks, strings.Join(h.Args, " "))
		}
	}
	return hooks
}

// Localhost seccomp profiles that fail bpf(2): with EPERM (errnoRet not
// given, or given as EPERM), or with ENOSYS (which the plugin cannot pass
// to containerd 2.2).
const (
	blockBPF       = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["bpf","kexec_load"],"action":"SCMP_ACT_ERRNO"}]}`
	blockBPFEPERM  = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["bpf","kexec_load"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}`
	blockBPFENOSYS = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}`
)

// TestNRIProfile: with `bpfgate k8s nri` running, a pod annotated with a
// profile gets exactly its rights through the plugin's hook, with no CDI
// device; an unannotated pod is left alone; a Localhost seccomp profile
// that blocks bpf(2) is rewritten to let it through.
func TestNRIProfile(t *testing.T) {
	e := setup(t)
	e.startNRI(t)
	for _, tc := range []struct {
		name    string
		pod     pod
		annots  map[string]string
		seccomp string
		want    map[string]string
		hooks   int
	}{
		{"pod annotation", pod{}, map[string]string{nri.ProfileAnnotation: "demo"}, "", demoAllowed, 1},
		{"container annotation", pod{}, map[string]string{nri.ContainerAnnotationPrefix + "c": "demo"}, "", demoAllowed, 1},
		{"other container's annotation", pod{}, map[string]string{nri.ContainerAnnotationPrefix + "other": "demo"}, "", nothingAllowed, 0},
		{"unannotated", pod{}, nil, "", nothingAllowed, 0},
		{"seccomp blocks bpf", pod{}, map[string]string{nri.ProfileAnnotation: "demo"}, blockBPF, demoAllowed, 1},
		// containerd 2.2 crashes on an NRI seccomp rule with errnoRet: the
		// plugin drops EPERM, the default.
		{"seccomp blocks bpf, errnoRet EPERM", pod{}, map[string]string{nri.ProfileAnnotation: "demo"}, blockBPFEPERM, demoAllowed, 1},
		// The CDI device's hook is there already: one hook, one mount.
		{"annotation and CDI device", pod{devices: []string{demoDevice}}, map[string]string{nri.ProfileAnnotation: "demo"}, "", demoAllowed, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, spec := e.nriCheck(t, tc.pod, tc.annots, tc.seccomp)
			expect(t, res, tc.want)
			hooks := e.bpfgateHooks(spec)
			if len(hooks) != tc.hooks {
				t.Errorf("bpfgate hooks: %q, want %d", hooks, tc.hooks)
			}
			for _, h := range hooks {
				if !strings.Contains(h, "oci-hook --profile demo") {
					t.Errorf("hook %q: want oci-hook --profile demo", h)
				}
			}
			for k, v := range spec.Annotations {
				if strings.HasPrefix(k, "cdi.k8s.io/") || strings.Contains(v, "bpfgate.dev/bpf=") {
					t.Errorf("CDI device in the container's config: %s=%s", k, v)
				}
			}
			if tc.seccomp != "" {
				if spec.Linux.Seccomp == nil || len(spec.Linux.Seccomp.Syscalls) == 0 ||
					!slices.Equal(spec.Linux.Seccomp.Syscalls[0].Names, []string{"bpf"}) ||
					spec.Linux.Seccomp.Syscalls[0].Action != "SCMP_ACT_ALLOW" {
					t.Errorf("seccomp: want an allow rule for bpf first: %+v", spec.Linux.Seccomp)
				}
				// The profile's other rules stay.
				kept := false
				for _, r := range spec.Linux.Seccomp.Syscalls {
					kept = kept || slices.Contains(r.Names, "kexec_load") && r.Action == "SCMP_ACT_ERRNO"
				}
				if !kept {
					t.Errorf("seccomp: the profile's kexec_load rule is gone: %+v", spec.Linux.Seccomp)
				}
			}
		})
	}
}

// TestNRIRefusals: the plugin's (and, for capabilities, which NRI does not
// show, its hook's) refusals reach crictl word for word, in the terms of a
// Kubernetes pod spec.
func TestNRIRefusals(t *testing.T) {
	e := setup(t)
	e.startNRI(t)
	demo := map[string]string{nri.ProfileAnnotation: "demo"}
	for _, tc := range []struct {
		name   string
		pod    pod
		annots map[string]string
		stage  string // the crictl command that fails: the plugin refuses at create, the hook at start
		want   string
		// seccomp is a Localhost seccomp profile; more says what else the
		// error says.
		seccomp, more string
	}{
		{"no user namespace", pod{noUserNS: true}, demo, "create",
			fmt.Sprintf("%s: %s", ocihook.ErrNoUserNS, ocihook.Kubernetes.UserNSFix()), "", ""},
		{"no CAP_BPF", pod{noCapBPF: true}, demo, "start",
			fmt.Sprintf("%s: CAP_BPF (%s)", ocihook.ErrMissingCaps, ocihook.Kubernetes.CapsFix([]string{"CAP_BPF"})), "", ""},
		{"profile not allowed", pod{}, map[string]string{nri.ProfileAnnotation: "gone"}, "create",
			fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone"), "", ""},
		// Left alone by the plugin (containerd 2.2 would crash), refused by
		// the hook: the containerd answering the next case proves it alive.
		{"seccomp blocks bpf with ENOSYS", pod{}, demo, "start", ocihook.ErrSeccomp.Error(),
			blockBPFENOSYS, ocihook.Kubernetes.SeccompFix()},
		// The pods here are in the namespace bpfgate-test.
		{"namespace not allowed", pod{}, map[string]string{nri.ProfileAnnotation: "scoped"}, "create",
			ocihook.ErrNotAllowed.Error() + ": profile scoped is for pods of the namespaces monitoring only (k8s_namespaces in ", "", ", not bpfgate-test"},
		{"profile not allowed, again", pod{}, map[string]string{nri.ProfileAnnotation: "gone"}, "create",
			fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := e.configs(t, tc.pod)
			annotatePod(t, dir, tc.annots)
			if tc.seccomp != "" {
				localhostSeccomp(t, dir, tc.seccomp)
			}
			s, err := e.start(t, dir)
			if err == nil {
				e.remove(t, s)
				t.Fatalf("the container started; want crictl to fail with %q", tc.want)
			}
			for _, want := range []string{tc.want, tc.more} {
				quoted := strconv.Quote(want)
				if !strings.Contains(err.Error(), quoted[1:len(quoted)-1]) {
					t.Fatalf("crictl's error does not say %q:\n%v", want, err)
				}
			}
			if cmd, _, _ := strings.Cut(err.Error(), ":"); !strings.Contains(cmd, " "+tc.stage+" ") {
				t.Errorf("crictl %s should have failed, not %s", tc.stage, cmd)
			}
		})
	}
}
