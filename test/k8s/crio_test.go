package k8s

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

// CRIO is a CRI-O of the run's own: its root, runroot, state, sockets,
// logs, CDI spec directory, hooks.d directory and configuration (its own
// policy.json, storage.conf and registries.conf too) are under Dir, and it
// runs in a mount namespace of its own. Every host path CRI-O would use by
// default is overridden in its configuration, and the caches that stay
// host paths whatever it says are private mounts (privateMounts); Stop
// fails the run if a path only CRI-O uses appeared on the host while it ran
// (crioHostPaths).
type CRIO struct {
	Dir      string // root of everything below
	Socket   string // the gRPC (CRI) socket
	CDIDir   string // the only CDI spec directory it reads
	HooksDir string // the only OCI hooks.d directory it reads
	// CgroupParent is the cgroup (relative to each hierarchy's root) its
	// pods go below: the harness removes it at the end.
	CgroupParent string

	bin     map[string]string // crio, pinns, runc, crictl, conmon
	env     []string          // CRI-O's and podman's: its own containers config files
	cmd     *exec.Cmd
	exited  chan error
	mountNS uint64
	log     string
	absent  []string // crioHostPaths that did not exist before it started
}

// crioBins are the binaries of the cached build CRI-O needs.
var crioBins = []string{"crio", "pinns", "runc", "crictl"}

// conmon is CRI-O's container monitor, from Debian (scripts/deps.sh).
const conmon = "/usr/bin/conmon"

// crioHostPaths are host paths that only CRI-O (and its pinns) use when not
// told otherwise: none of them may appear on the host while the harness
// runs, as its configuration overrides every one. The defaults it shares
// with podman, runc, crun and containerd (/var/lib/containers,
// /run/containers, /run/runc, /run/crun, /run/netns, /etc/cdi, /run/cdi,
// the hooks.d directories, /var/lib/cni) are overridden too, or privately
// mounted (privateMounts), but other tests of the suite, running at the
// same time, create them: their appearing would say nothing about CRI-O.
var crioHostPaths = []string{
	"/run/crio", "/var/lib/crio", "/var/log/crio", "/etc/crio",
	"/run/ipcns", "/run/utsns", "/run/userns", "/run/pidns", // pinns's namespaces_dir (netns: /run/netns)
	"/run/nri", "/opt/nri", // NRI (off)
	"/etc/sysconfig", // irqbalance
	"/opt/cni",
}

// StartCRIO starts a CRI-O in dir with the images in archives (path ->
// image name, see image.writeArchive) in its storage, and waits for it to
// be ready. dir must exist and hold nothing but, optionally, CDI specs in
// dir/cdi and hooks.d entries in dir/hooks.d (CRI-O reads both at start).
// Stop it with Stop.
func StartCRIO(tb testing.TB, dir string, archives map[string]string) (*CRIO, error) {
	tb.Helper()
	c := &CRIO{
		Dir:          dir,
		Socket:       filepath.Join(dir, "crio.sock"),
		CDIDir:       filepath.Join(dir, "cdi"),
		HooksDir:     filepath.Join(dir, "hooks.d"),
		CgroupParent: fmt.Sprintf("/bpfgate-crio-%x", sha256.Sum256([]byte(dir)))[:len("/bpfgate-crio-")+16],
		bin:          map[string]string{"conmon": conmon},
		log:          filepath.Join(dir, "crio.log"),
	}
	for _, b := range append(crioBins, "cni/loopback") {
		c.bin[b] = testutil.K8sBin(tb, b)
	}
	if _, err := os.Stat(conmon); err != nil {
		testutil.Skip(tb, "conmon is not installed (scripts/deps.sh: conmon)")
	}
	for _, p := range crioHostPaths {
		if _, err := os.Lstat(p); err != nil {
			c.absent = append(c.absent, p)
		}
	}
	for _, d := range []string{"cdi", "hooks.d", "cni-bin", "cni-conf", "root", "run", "tmp", "podman/tmp", "podman/networks"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := c.writeConfig(); err != nil {
		return nil, err
	}
	for a, name := range archives {
		if err := c.load(a, name); err != nil {
			return nil, err
		}
	}
	if err := c.start(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *CRIO) cgroupParent() string { return c.CgroupParent }

// Endpoint is the CRI endpoint for crictl and kubelet.
func (c *CRIO) Endpoint() string { return "unix://" + c.Socket }

func (c *CRIO) writeConfig() error {
	d := func(name string) string { return filepath.Join(c.Dir, name) }
	files := map[string]string{
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}` + "\n",
		"registries.conf": "unqualified-search-registries = []\n",
		"storage.conf":    fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", d("root"), d("run")),
		// podman (loading images): file locks in its tmpdir, not /dev/shm;
		// no events file; its network config here.
		"containers.conf": fmt.Sprintf(`[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
lock_type = "file"
runtime = %q
tmp_dir = %q
[network]
network_config_dir = %q
`, c.bin["runc"], d("podman/tmp"), d("podman/networks")),
		// Every path CRI-O has a host default for is set here; NRI is off
		// (its socket and plugin directories would be host paths). The
		// seccomp notifier's directory is the socket's, "seccomp".
		"crio.conf": fmt.Sprintf(`[crio]
root = %[1]q
runroot = %[2]q
storage_driver = "overlay"
log_dir = %[3]q
version_file = %[4]q
version_file_persist = %[5]q
clean_shutdown_file = %[6]q
[crio.api]
listen = %[7]q
stream_address = "127.0.0.1"
stream_port = "0"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
cdi_spec_dirs = [%[8]q]
hooks_dir = [%[9]q]
pinns_path = %[10]q
namespaces_dir = %[11]q
container_exits_dir = %[12]q
container_attach_socket_dir = %[13]q
decryption_keys_path = %[14]q
irqbalance_config_file = %[15]q
irqbalance_config_restore_file = "disable"
default_ulimits = []
log_to_journald = false
enable_criu_support = false
[crio.runtime.runtimes.runc]
runtime_path = %[16]q
runtime_type = "oci"
runtime_root = %[17]q
monitor_path = %[18]q
# CRI-O's built-in handler, kept when another is the default: a path
# that is not there drops it (crun 1.8 makes /run/crun at every start, even
# for --version, which CRI-O runs).
[crio.runtime.runtimes.crun]
runtime_path = %[25]q
[crio.image]
pause_image = %[19]q
signature_policy = %[20]q
signature_policy_dir = %[21]q
big_files_temporary_dir = %[22]q
[crio.network]
network_dir = %[23]q
plugin_dirs = [%[24]q]
[crio.nri]
enable_nri = false
[crio.metrics]
enable_metrics = false
`, d("root"), d("run"), d("pods"), d("version"), d("version-persist"), d("clean.shutdown"),
			c.Socket, c.CDIDir, c.HooksDir, c.bin["pinns"], d("ns"), d("exits"), d("attach"),
			d("keys"), d("irqbalance"), c.bin["runc"], d("runc"), c.bin["conmon"],
			pauseImage, d("policy.json"), d("policies"), d("tmp"), d("cni-conf"), d("cni-bin"), d("no-crun")),
		"cni-conf/10-bpfgate-test.conflist": `{"cniVersion":"1.0.0","name":"bpfgate-test","plugins":[{"type":"bpfgate-test-veth"}]}`,
		"crictl.yaml":                       fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 60\n", c.Endpoint(), c.Endpoint()),
	}
	for name, data := range files {
		if err := os.WriteFile(d(name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(d("cni-bin/bpfgate-test-veth"), []byte(cniPlugin), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(c.bin["cni/loopback"], d("cni-bin/loopback")); err != nil {
		return err
	}
	c.env = append(os.Environ(),
		"CONTAINERS_CONF="+d("containers.conf"),
		"CONTAINERS_STORAGE_CONF="+d("storage.conf"),
		"CONTAINERS_REGISTRIES_CONF="+d("registries.conf"),
		"TMPDIR="+d("tmp"),
		"PATH="+filepath.Dir(c.bin["crio"])+":"+os.Getenv("PATH"))
	return nil
}

// load loads an OCI archive into CRI-O's storage with podman, in a mount
// namespace of its own (its storage driver's mounts stay there; see also
// privateMounts), and names the image (podman does not read containerd's
// name annotation).
func (c *CRIO) load(archive, name string) error {
	out, err := c.podman("load", "-q", "-i", archive)
	if err != nil {
		return err
	}
	// "Loaded image: sha256:ID" (or a name podman made up).
	_, id, ok := strings.Cut(strings.TrimSpace(out), "Loaded image: ")
	if !ok {
		return fmt.Errorf("podman load %s: no image in %q", archive, out)
	}
	_, err = c.podman("tag", strings.TrimPrefix(strings.TrimSpace(id), "sha256:"), name)
	return err
}

func (c *CRIO) podman(args ...string) (string, error) {
	d := func(name string) string { return filepath.Join(c.Dir, name) }
	cmd := exec.Command("sh", append([]string{"-c", privateMounts, "sh", "podman", "--root", d("root"), "--runroot", d("run"),
		"--tmpdir", d("podman/tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
		"--events-backend", "none", "--network-config-dir", d("podman/networks")}, args...)...)
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", err
	}
	return string(out), nil
}

// privateMounts is what the shell CRI-O and podman run under does first in
// their mount namespace: private tmpfs mounts on the host paths they use
// whatever their configuration says. /var/lib/cni: libcni keeps the result
// of every CNI ADD there. /var/lib/containers: containers/image's blob info
// cache is /var/lib/containers/cache for root. Where the host lacks one of
// them to mount on, the tmpfs goes on /var/lib itself (nothing there is of
// use to them with this configuration). /var/tmp: podman 4.3 unpacks an OCI
// archive there, whatever TMPDIR or image_copy_tmp_dir say.
const privateMounts = `if [ -d /var/lib/cni ] && [ -d /var/lib/containers ]; then
	mount -t tmpfs -o mode=0700 bpfgate-crio /var/lib/cni &&
	mount -t tmpfs -o mode=0711 bpfgate-crio /var/lib/containers
else
	mount -t tmpfs -o mode=0755 bpfgate-crio /var/lib
fi && mount -t tmpfs -o mode=1777 bpfgate-crio /var/tmp && exec "$@"`

func (c *CRIO) start() error {
	logf, err := os.Create(c.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	c.cmd = exec.Command("sh", "-c", privateMounts, "sh",
		c.bin["crio"], "--config", filepath.Join(c.Dir, "crio.conf"), "--config-dir", "")
	c.cmd.Env = c.env
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setsid: true}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start crio: %w", err)
	}
	c.exited = make(chan error, 1)
	go func() { c.exited <- c.cmd.Wait() }()
	ns, err := nsInode(c.cmd.Process.Pid, "mnt")
	if err != nil {
		return err
	}
	if own, err := nsInode(os.Getpid(), "mnt"); err != nil || own == ns {
		return fmt.Errorf("CRI-O did not get a mount namespace of its own (%v)", err)
	}
	c.mountNS = ns
	// Ready: the runtime and the network (CNI config found).
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := c.Crictl("info")
		if err == nil && strings.Count(strings.Join(strings.Fields(out), ""), `"status":true`) >= 2 {
			return nil
		}
		select {
		case err := <-c.exited:
			c.exited <- err
			return fmt.Errorf("crio exited: %v\n%s", err, c.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("crio was not ready on %s in 60 s: %v %s\n%s", c.Socket, err, out, c.logTail())
		}
	}
}

func (c *CRIO) logTail() string {
	data, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// Crictl runs crictl on this CRI-O.
func (c *CRIO) Crictl(args ...string) (string, error) {
	return run(c.bin["crictl"], append([]string{"--config", filepath.Join(c.Dir, "crictl.yaml")}, args...)...)
}

// Stop removes every pod, stops CRI-O and whatever is left in its mount
// namespace (conmon), removes the pods' cgroups and reports what it could
// not clean, and every host path of crioHostPaths that appeared.
func (c *CRIO) Stop() []string {
	var left []string
	if c.cmd != nil && c.cmd.Process != nil {
		if _, err := c.Crictl("rmp", "--force", "--all"); err != nil {
			left = append(left, "pods: "+err.Error())
		}
		c.cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
		for i := 0; ; i++ {
			pids := nsProcesses(c.mountNS)
			if len(pids) == 0 {
				break
			}
			if i == 50 {
				left = append(left, fmt.Sprintf("processes in CRI-O's mount namespace: %v", pids))
				break
			}
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	left = append(left, removeCgroupTrees(c.CgroupParent, true)...)
	left = append(left, c.hostPaths()...)
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(c.Dir))
	if err != nil {
		left = append(left, err.Error())
	}
	for _, m := range ms {
		left = append(left, "mount "+m.Mountpoint)
	}
	return left
}

// hostPaths lists the paths of crioHostPaths that did not exist when the
// harness started and do now.
func (c *CRIO) hostPaths() []string {
	var made []string
	for _, p := range c.absent {
		if _, err := os.Lstat(p); err == nil {
			made = append(made, "host path "+p+" (a CRI-O default the harness should override)")
		}
	}
	return made
}

var (
	crioOnce   sync.Once
	crioShared env
)

// setupCRIO is setup for CRI-O: one CRI-O for the run, with the images, the
// CDI spec and bpfgate's hooks.d entry.
func setupCRIO(t testing.TB) *env {
	t.Helper()
	setupTools(t)
	for _, b := range crioBins {
		testutil.K8sBin(t, b)
	}
	if _, err := os.Stat(conmon); err != nil {
		testutil.Skip(t, "conmon is not installed (scripts/deps.sh: conmon)")
	}
	crioOnce.Do(func() {
		crioShared = tools
		crioShared.err = crioShared.startCRIO(t)
	})
	if crioShared.err != nil {
		t.Fatal(crioShared.err)
	}
	return &crioShared
}

func (e *env) startCRIO(t testing.TB) error {
	dir := filepath.Join(e.dir, "crio")
	for _, d := range []string{"cdi", "hooks.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	e.hookLog = e.hookLogOf("crio")
	// CRI-O reads both at start (and watches them): put them there first.
	if err := copyFile(e.spec("crio"), filepath.Join(dir, "cdi", "bpfgate.yaml")); err != nil {
		return err
	}
	if _, err := run(e.bpfgate, "--config", e.config, "oci-hook", "hooks-d",
		"-o", filepath.Join(dir, "hooks.d", "bpfgate.json"), "--log", e.hookLog); err != nil {
		return err
	}
	var err error
	e.crio, err = StartCRIO(t, dir, e.archives)
	if e.crio != nil {
		e.cri = e.crio
	}
	return err
}

// TestCRIOCDIDevice: on CRI-O, a pod with a user namespace gets exactly the
// demo profile's rights through the CRI CDI field and the cdi.k8s.io
// annotation, and nothing without the device.
func TestCRIOCDIDevice(t *testing.T) {
	checkCDIDevice(t, setupCRIO(t))
}

// profileAnnotation selects the profile for the hooks.d entry.
var profileAnnotation = map[string]string{ocihook.ProfileAnnotation: "demo"}

// TestCRIOHooksD: CRI-O runs bpfgate's hooks.d entry for a container
// annotated io.bpfgate.profile (no CDI device), which then gets exactly the
// profile's rights; a container without the annotation gets nothing.
func TestCRIOHooksD(t *testing.T) {
	e := setupCRIO(t)
	for _, tc := range []struct {
		name string
		pod  pod
		want map[string]string
	}{
		{"annotated", pod{annots: profileAnnotation}, demoAllowed},
		{"not annotated", pod{annots: map[string]string{"io.bpfgate.other": "demo"}}, nothingAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, e.check(t, tc.pod), tc.want)
		})
	}
}

// TestCRIOPodAnnotation: CRI-O copies a pod's annotations into each of
// its containers and runs hooks.d entries on them, so a pod annotated
// io.bpfgate.profile (the sandbox's annotations, not the container's, as
// kubelet passes a pod's) gets the hook and the profile; one limited to
// the namespace monitoring (k8s_namespaces) is refused to this pod of
// bpfgate-test, which the hook let through before it refused such
// profiles on the annotation route.
func TestCRIOPodAnnotation(t *testing.T) {
	e := setupCRIO(t)
	t.Run("demo", func(t *testing.T) {
		dir := e.configs(t, pod{command: []string{"/bin/ebpfcheck"}})
		annotatePod(t, dir, profileAnnotation)
		s, err := e.start(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer e.remove(t, s)
		var res map[string]string
		if out := e.output(t, s); json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("ebpfcheck: %q", out)
		}
		expect(t, res, demoAllowed)
	})
	t.Run("namespace not allowed", func(t *testing.T) {
		dir := e.configs(t, pod{})
		annotatePod(t, dir, map[string]string{ocihook.ProfileAnnotation: "scoped"})
		s, err := e.start(t, dir)
		if err == nil {
			e.remove(t, s)
			t.Fatal("the container started with profile scoped in namespace bpfgate-test")
		}
		if want := "profile scoped is for pods of the Kubernetes namespaces monitoring only (k8s_namespaces)"; !strings.Contains(err.Error(), want) {
			t.Fatalf("crictl's error does not say %q:\n%v", want, err)
		}
	})
}

// TestCRIORefusals: the hook's refusal reaches the CRI client through
// CRI-O word for word: crictl create fails with it (CRI-O runs the runtime's
// create, and so the hook, when the container is created; containerd when
// it is started). The expected texts are built from ocihook's and
// profile's exported errors, as in TestCRIRefusals.
func TestCRIORefusals(t *testing.T) {
	e := setupCRIO(t)
	noCap := ocihook.ErrMissingCaps.Error() + ": CAP_BPF"
	for _, tc := range []struct {
		name string
		pod  pod
		want string
	}{
		{"no user namespace", pod{noUserNS: true, devices: []string{demoDevice}}, ocihook.ErrNoUserNS.Error()},
		{"no user namespace, hooks.d", pod{noUserNS: true, annots: profileAnnotation}, ocihook.ErrNoUserNS.Error()},
		{"no CAP_BPF", pod{noCapBPF: true, devices: []string{demoDevice}}, noCap},
		{"no CAP_BPF, CDI annotation", pod{noCapBPF: true, annots: map[string]string{cdiAnnotation: demoDevice}}, noCap},
		{"no CAP_BPF, hooks.d", pod{noCapBPF: true, annots: profileAnnotation}, noCap},
		{"profile not allowed", pod{devices: []string{"bpfgate.dev/bpf=gone"}},
			fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone")},
		{"profile not allowed, hooks.d", pod{annots: map[string]string{ocihook.ProfileAnnotation: "gone"}},
			fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.expectRefusal(t, tc.pod, tc.want)
		})
	}
}

// TestCRIOIsolation: while a pod runs, nothing of the harness's CRI-O
// shows on the host: no mount below its directory, none of its private
// tmpfs mounts (privateMounts), none of crioHostPaths appeared, its
// runtime configuration as it reports it names no host path but the
// binaries it runs; the container's namespaces
// are pinned under its directory and its cgroup is below its cgroup parent.
func TestCRIOIsolation(t *testing.T) {
	e := setupCRIO(t)
	// PID 1 of its namespace, sleep would ignore CRI-O's SIGTERM, and the
	// removal would wait for CRI-O's stop timeout.
	s, err := e.start(t, e.configs(t, pod{command: []string{"/bin/sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.remove(t, s)

	ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(m.Mountpoint, e.crio.Dir+"/") && m.Source != "bpfgate-crio", false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("on the host: %s mounted on %s", m.FSType, m.Mountpoint)
	}
	for _, p := range e.crio.hostPaths() {
		t.Error(p)
	}

	for _, p := range e.crio.configPaths(t) {
		t.Errorf("CRI-O's runtime configuration names a host path: %s", p)
	}
	out, err := e.crio.Crictl("inspect", "--output", "json", s.ctr)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					CgroupsPath string `json:"cgroupsPath"`
					Namespaces  []struct {
						Type string `json:"type"`
						Path string `json:"path"`
					} `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	spec := info.Info.RuntimeSpec.Linux
	pinned := 0
	for _, ns := range spec.Namespaces {
		if ns.Path == "" {
			continue
		}
		pinned++
		if !strings.HasPrefix(ns.Path, e.crio.Dir+"/") {
			t.Errorf("the container's %s namespace is %q, not under %s", ns.Type, ns.Path, e.crio.Dir)
		}
	}
	if pinned == 0 {
		t.Errorf("no namespace of the pod is pinned (CRI-O's pinns): %+v", spec.Namespaces)
	}
	if !strings.HasPrefix(spec.CgroupsPath, e.crio.CgroupParent+"/") {
		t.Errorf("the container's cgroup is %q, not below %s", spec.CgroupsPath, e.crio.CgroupParent)
	}
}

// configPaths are the absolute paths in the runtime configuration CRI-O
// reports (crictl info: the [crio.runtime] table and its handlers) that are
// neither under Dir, nor a binary it was given, nor a device: defaults the
// harness did not override. A handler it was not given (CRI-O's built-in
// crun) would show here with its runtime root.
func (c *CRIO) configPaths(t *testing.T) []string {
	t.Helper()
	out, err := c.Crictl("info")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Config any `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl info: %v", err)
	}
	given := map[string]bool{}
	for _, b := range c.bin {
		given[b] = true
	}
	var paths []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(key+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(key, x)
			}
		case string:
			if strings.HasPrefix(v, "/") && !strings.HasPrefix(v, c.Dir+"/") && !given[v] && !strings.HasPrefix(v, "/dev/") {
				paths = append(paths, key+" = "+v)
			}
		}
	}
	walk("config", info.Config)
	sort.Strings(paths)
	if len(paths) == 0 && !strings.Contains(out, c.Dir+"/") {
		t.Fatalf("crictl info shows no path of the harness: %.500s", out)
	}
	return paths
}
