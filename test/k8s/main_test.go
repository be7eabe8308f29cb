package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// env is what a runtime's tests share: the tools (made once for every
// runtime), and one runtime with the images imported and bpfgate's CDI spec
// in its CDI directory. setup makes containerd's, setupCRIO CRI-O's.
type env struct {
	dir      string
	bpfgate  string
	config   string            // the host policy the hook reads
	hookLog  string            // the hook's JSON log
	archives map[string]string // the images as OCI archives: path -> image name
	specs    string            // CDI specs, one per runtime, each logging to its own file
	cri      criRuntime
	cd       *Containerd
	crio     *CRIO
	err      error
}

var (
	toolsOnce sync.Once
	tools     env // dir, bpfgate, config, archives, specs
	once      sync.Once
	shared    env // containerd
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
  scoped:
    description: demo's rights, for pods of the namespace monitoring only
    cmds: [map_create, prog_load, btf_load]
    maps: [hash, array]
    progs: [socket_filter]
    attachs: [cgroup_inet_ingress]
    k8s_namespaces: [monitoring]
`

const goneProfile = `  gone:
    description: in the CDI spec, no longer in the policy
    cmds: [map_create]
    maps: [hash]
`

func setup(t testing.TB) *env {
	t.Helper()
	setupTools(t)
	for _, b := range k8sBins {
		testutil.K8sBin(t, b)
	}
	once.Do(func() {
		shared = tools
		shared.err = shared.startContainerd(t)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &shared
}

// setupTools makes the tools every runtime's harness uses, once.
func setupTools(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"busybox", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Skip(t, tool+" is not installed (scripts/deps.sh: busybox-static, util-linux, iproute2)")
		}
	}
	toolsOnce.Do(func() { tools.err = tools.buildTools() })
	if tools.err != nil {
		t.Fatal(tools.err)
	}
}

// spec is the CDI spec for a runtime, with the hook logging to
// hookLog(runtime).
func (e *env) spec(runtime string) string {
	return filepath.Join(e.specs, runtime+".yaml")
}

func (e *env) hookLogOf(runtime string) string {
	return filepath.Join(e.dir, runtime+"-hook.log")
}

// specRuntimes are the runtimes buildTools writes a CDI spec for.
var specRuntimes = []string{"containerd", "crio"}

func (e *env) buildTools() error {
	dir, err := os.MkdirTemp("", "bpfgate-k8s-")
	if err != nil {
		return err
	}
	e.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	// As the packages install them: the lean bpfgate, which runtimes run as
	// the hook, and bpfgate-k8s next to it, to which `bpfgate k8s` hands
	// over and whose hooks name the lean one.
	e.bpfgate = filepath.Join(dir, "bpfgate")
	if _, err := run("go", "build", "-o", e.bpfgate, "../../cmd/bpfgate"); err != nil {
		return err
	}
	if _, err := run("go", "build", "-tags", "k8s", "-o", filepath.Join(dir, "bpfgate-k8s"), "../../cmd/bpfgate"); err != nil {
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
	e.archives = map[string]string{}
	for _, img := range []*image{
		{name: testImage, cmd: []string{"/bin/sh"},
			files: busyboxFiles(busybox, map[string]file{"bin/ebpfcheck": {mode: 0o755, data: check}})},
		// PID 1 of every pod's sandbox: containerd stops it with SIGKILL.
		{name: pauseImage, cmd: []string{"/bin/sleep", "2147483647"}, files: busyboxFiles(busybox, nil)},
	} {
		// No colon: podman takes it for a reference's.
		archive := filepath.Join(dir, strings.ReplaceAll(filepath.Base(img.name), ":", "_")+".tar")
		if err := img.writeArchive(archive); err != nil {
			return err
		}
		e.archives[archive] = img.name
	}

	e.config = filepath.Join(dir, "config.yaml")
	e.specs = filepath.Join(dir, "cdi-specs")
	if err := os.Mkdir(e.specs, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(e.config, []byte(policy+goneProfile), 0o644); err != nil {
		return err
	}
	for _, rt := range specRuntimes {
		if _, err := run(e.bpfgate, "--config", e.config, "cdi", "generate",
			"-o", e.spec(rt), "--log", e.hookLogOf(rt)); err != nil {
			return err
		}
	}
	return os.WriteFile(e.config, []byte(policy), 0o644)
}

// startContainerd starts containerd, imports the images and puts the CDI
// spec in its CDI directory.
func (e *env) startContainerd(t testing.TB) error {
	var err error
	if e.cd, err = StartContainerd(t, filepath.Join(e.dir, "containerd")); err != nil {
		return err
	}
	e.cri = e.cd
	e.hookLog = e.hookLogOf("containerd")
	for archive := range e.archives {
		if err := e.cd.Import(archive); err != nil {
			return err
		}
	}
	return copyFile(e.spec("containerd"), filepath.Join(e.cd.CDIDir, "bpfgate.yaml"))
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// teardown stops CRI-O and containerd and removes everything; it returns
// what it could not clean up.
func teardown() []string {
	var left []string
	if crioShared.crio != nil {
		left = append(left, crioShared.crio.Stop()...)
	}
	if shared.cd != nil {
		left = append(left, shared.cd.Stop()...)
	}
	if tools.dir != "" {
		if err := os.RemoveAll(tools.dir); err != nil {
			left = append(left, err.Error())
		}
	}
	return left
}

func TestMain(m *testing.M) {
	code := m.Run()
	if left := teardown(); len(left) > 0 {
		fmt.Println("test/k8s: left on the host after the tests:")
		for _, l := range left {
			fmt.Println("  " + l)
		}
		code = 1
	}
	os.Exit(code)
}
