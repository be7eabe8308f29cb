package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// env is what every test shares, made once by setup: one containerd with
// the images imported and bpfgate's CDI spec in its CDI directory.
type env struct {
	dir     string
	bpfgate string
	config  string // the host policy the hook reads
	hookLog string // the hook's JSON log
	cd      *Containerd
	err     error
}

var (
	once   sync.Once
	shared env
)

// Images the tests import; the pause image is containerd's sandbox image.
const (
	testImage  = "docker.io/library/bpfgate-k8s-test:1"
	pauseImage = "docker.io/library/bpfgate-k8s-pause:1"
)

// policy is the host policy. The spec is generated from it with the gone
// profile too, which is then dropped: a device whose profile the host no
// longer allows (the spec is older than the policy).
const policy = `profiles:
  demo:
    description: hash and array maps, socket filters
    cmds: [map_create, prog_load, btf_load]
    maps: [hash, array]
    progs: [socket_filter]
    attachs: [cgroup_inet_ingress]
`

const goneProfile = `  gone:
    description: in the CDI spec, no longer in the policy
    cmds: [map_create]
    maps: [hash]
`

func setup(t testing.TB) *env {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"busybox", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Skip(t, tool+" is not installed (scripts/deps.sh: busybox-static, util-linux, iproute2)")
		}
	}
	for _, b := range k8sBins {
		testutil.K8sBin(t, b)
	}
	once.Do(func() { shared.err = shared.build(t) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &shared
}

func (e *env) build(t testing.TB) error {
	dir, err := os.MkdirTemp("", "bpfgate-k8s-")
	if err != nil {
		return err
	}
	e.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	e.bpfgate = filepath.Join(dir, "bpfgate")
	if _, err := run("go", "build", "-tags", "k8s", "-o", e.bpfgate, "../../cmd/bpfgate"); err != nil {
		return err
	}
	ebpfcheck := filepath.Join(dir, "ebpfcheck")
	build := exec.Command("go", "build", "-o", ebpfcheck, "../../internal/cmd/ebpfcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build ebpfcheck: %w\n%s", err, out)
	}
	bb, _ := exec.LookPath("busybox")
	busybox, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	check, err := os.ReadFile(ebpfcheck)
	if err != nil {
		return err
	}

	if e.cd, err = StartContainerd(t, filepath.Join(dir, "containerd")); err != nil {
		return err
	}
	for _, img := range []*image{
		{name: testImage, cmd: []string{"/bin/sh"},
			files: busyboxFiles(busybox, map[string]file{"bin/ebpfcheck": {mode: 0o755, data: check}})},
		// PID 1 of every pod's sandbox: containerd stops it with SIGKILL.
		{name: pauseImage, cmd: []string{"/bin/sleep", "2147483647"}, files: busyboxFiles(busybox, nil)},
	} {
		archive := filepath.Join(dir, filepath.Base(img.name)+".tar")
		if err := img.writeArchive(archive); err != nil {
			return err
		}
		if err := e.cd.Import(archive); err != nil {
			return err
		}
	}

	e.config = filepath.Join(dir, "config.yaml")
	e.hookLog = filepath.Join(dir, "hook.log")
	if err := os.WriteFile(e.config, []byte(policy+goneProfile), 0o644); err != nil {
		return err
	}
	if _, err := run(e.bpfgate, "--config", e.config, "cdi", "generate",
		"-o", filepath.Join(e.cd.CDIDir, "bpfgate.yaml"), "--log", e.hookLog); err != nil {
		return err
	}
	return os.WriteFile(e.config, []byte(policy), 0o644)
}

// teardown stops containerd and removes everything; it returns what it
// could not clean up.
func (e *env) teardown() []string {
	var left []string
	if e.cd != nil {
		left = e.cd.Stop()
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			left = append(left, err.Error())
		}
	}
	return left
}

func TestMain(m *testing.M) {
	code := m.Run()
	if left := shared.teardown(); len(left) > 0 {
		fmt.Println("test/k8s: left on the host after the tests:")
		for _, l := range left {
			fmt.Println("  " + l)
		}
		code = 1
	}
	os.Exit(code)
}
