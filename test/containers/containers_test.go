package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// env is the set-up every test shares, made once by setup.
type env struct {
	dir     string // everything the tests write
	bpfgate string
	config  string // the host policy
	seccomp string
	hooks   string // a hooks.d directory
	cdiSpec string
	podman  []string // the podman command the helpers run (see crun)
	image   string   // the test image, in the run's own podman storage
	hostDir string   // a host directory the image's /linked points at
	err     error
}

var (
	once   sync.Once
	shared env
)

const policy = `profiles:
  demo:
    description: hash and array maps, socket filters
    cmds: [map_create, prog_load, btf_load]
    maps: [hash, array]
    progs: [socket_filter]
    attachs: [cgroup_inet_ingress]
  xdp:
    cmds: [map_create, prog_load, btf_load]
    maps: [lru_hash]
    progs: [xdp]
    attachs: [xdp]
  linked:
    description: its path is an absolute symlink in the test image
    cmds: [map_create]
    maps: [hash]
    path: /linked
`

// Host ids for the containers, away from the ids of accounts and from the
// pool bpfgate run takes its ranges from (0x70000000 up): podman
// --userns=auto hands out 64Ki ranges of the first block (room for 128
// containers), the runc bundles get 64Ki each from the second.
const (
	subIDStart  = 0x60000000
	subIDSize   = 0x800000
	runcIDStart = subIDStart + subIDSize
	runcIDSize  = 0x10000
	runcIDCount = 256
)

func setup(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"podman", "runc", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Skip(t, tool+" is not installed (apt-get install podman runc busybox-static)")
		}
	}
	once.Do(func() { shared.err = shared.build() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &shared
}

// runTimeout bounds every command: a podman that hangs (on a storage lock,
// say) fails its test and is stopped with SIGTERM, so that it releases its
// locks, instead of wedging podman for everyone on the machine.
const runTimeout = 2 * time.Minute

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// build makes everything in e.dir, which TestMain made.
func (e *env) build() error {
	dir := e.dir
	e.image = "localhost/bpfgate-e2e:latest"
	e.bpfgate = filepath.Join(dir, "bpfgate")
	if _, err := run("go", "build", "-o", e.bpfgate, "../../cmd/bpfgate"); err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	busybox, _ := exec.LookPath("busybox")
	if _, err := run("cp", busybox, filepath.Join(rootfs, "bin/busybox")); err != nil {
		return err
	}
	for _, c := range []string{"sh", "cat", "cut", "grep", "ls", "sleep", "touch", "true", "wc"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", c)); err != nil {
			return err
		}
	}
	// The image's /linked is an absolute symlink to a directory that exists
	// on the host, not in the image: the linked profile must not follow it.
	e.hostDir = filepath.Join(dir, "hostdir")
	if err := os.Mkdir(e.hostDir, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(e.hostDir, filepath.Join(rootfs, "linked")); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "bin/ebpfcheck"), "../../internal/cmd/ebpfcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build ebpfcheck: %w\n%s", err, out)
	}

	if err := e.configurePodman(); err != nil {
		return err
	}
	if err := e.addSubIDs(); err != nil {
		return err
	}
	imp := exec.Command("sh", "-c", "tar -C "+rootfs+" -c . | podman import - "+e.image)
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("podman import: %w\n%s", err, out)
	}

	e.config = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(e.config, []byte(policy), 0o644); err != nil {
		return err
	}
	e.seccomp = filepath.Join(dir, "seccomp.json")
	e.hooks = filepath.Join(dir, "hooks.d")
	// podman 4.3 reads CDI specs from /etc/cdi and /var/run/cdi only: in
	// the tests' mount namespace both are the run's own (isolate).
	e.cdiSpec = "/var/run/cdi/bpfgate-e2e.yaml"
	for _, args := range [][]string{
		{"--config", e.config, "oci-hook", "seccomp", "-o", e.seccomp},
		{"--config", e.config, "oci-hook", "hooks-d", "-o", filepath.Join(e.hooks, "bpfgate.json"), "--log", filepath.Join(dir, "hook.log")},
		{"--config", e.config, "cdi", "generate", "-o", e.cdiSpec, "--log", filepath.Join(dir, "hook.log")},
	} {
		if _, err := run(e.bpfgate, args...); err != nil {
			return err
		}
	}
	return nil
}

// configurePodman gives podman a containers.conf and a storage.conf of the
// run's own: its storage, state, locks, hooks and network configuration
// live in e.dir, not in the system's store.
func (e *env) configurePodman() error {
	d := func(name string) string { return filepath.Join(e.dir, name) }
	if err := os.Mkdir(d("hooks-none"), 0o755); err != nil {
		return err
	}
	// No default ulimits (CAP_SYS_RESOURCE is missing here), runc, and no
	// network: the tests need none, and netavark would change the host's
	// firewall. File locks, not the system podman's shared memory ones.
	conf := fmt.Sprintf(`[containers]
default_ulimits = []
netns = "none"
[engine]
runtime = "runc"
tmp_dir = %q
lock_type = "file"
events_logger = "none"
hooks_dir = [%q]
image_copy_tmp_dir = "storage"
[network]
network_config_dir = %q
`, d("podman-tmp"), d("hooks-none"), d("networks"))
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", d("storage"), d("storage-run"))
	for name, data := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(d(name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	os.Setenv("CONTAINERS_CONF", d("containers.conf"))
	os.Setenv("CONTAINERS_STORAGE_CONF", d("storage.conf"))
	e.podman = []string{"podman"}
	return nil
}

// runPodman runs e.podman with args.
func (e *env) runPodman(args ...string) (string, error) {
	return run(e.podman[0], append(e.podman[1:], args...)...)
}

// runLock serialises runs of these tests on a machine (from several
// checkouts, say): their containers get host ids from the same blocks.
const runLock = "/run/bpfgate-e2e.lock"

var subIDFiles = []string{"/etc/subuid", "/etc/subgid"}

// subIDLine gives the "containers" user, whose ranges podman --userns=auto
// hands out, a block of host ids.
var subIDLine = fmt.Sprintf("containers:%d:%d", subIDStart, subIDSize)

// addSubIDs adds subIDLine to each file without a "containers" entry: in
// the tests' mount namespace, where /etc is an overlay.
func (e *env) addSubIDs() error {
	for _, file := range subIDFiles {
		data, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if strings.HasPrefix(string(data), "containers:") || strings.Contains(string(data), "\ncontainers:") {
			continue
		}
		if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
			data = append(data, '\n')
		}
		if err := os.WriteFile(file, append(data, subIDLine+"\n"...), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	switch dir := os.Getenv(dirEnv); {
	case len(os.Args) > 2 && os.Args[1] == v1OnlyArg:
		os.Exit(cgroupV1Only(os.Args[2:]))
	case os.Geteuid() != 0:
		// Every test skips, or fails under CI=true.
		os.Exit(m.Run())
	case dir == "":
		os.Exit(outside())
	default:
		if err := isolate(dir); err != nil {
			fmt.Println("isolate the container tests:", err)
			os.Exit(1)
		}
		shared.dir = dir
		os.Exit(m.Run())
	}
}

// autoUserNS gives a container a user namespace and a host id range of its
// own. The size matters on podman 4.3: without one, podman scans the image
// for the ids it needs, and concurrent starts deadlock on the storage locks
// (seen here; containers/storage fixed the lock order later).
const autoUserNS = "--userns=auto:size=65536"

// userns are podman flags that give a container a user namespace and a
// host id range of its own, and what a token needs inside.
func (e *env) userns() []string {
	return []string{autoUserNS, "--cap-add", "bpf", "--security-opt", "seccomp=" + e.seccomp}
}

// podmanRun runs ebpfcheck in a container and decodes its report.
func (e *env) podmanRun(t *testing.T, flags ...string) (map[string]string, error) {
	t.Helper()
	args := append([]string{"run", "--rm"}, flags...)
	args = append(args, e.image, "/bin/ebpfcheck")
	out, err := e.runPodman(args...)
	if err != nil {
		return nil, err
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ebpfcheck: %v: %q", err, out)
	}
	return res, nil
}

func expect(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

var (
	demoAllowed = map[string]string{"map/hash": "ok", "map/array": "ok", "prog/socket_filter": "ok",
		"map/lru_hash": "EPERM", "map/ringbuf": "EPERM", "prog/xdp": "EPERM", "prog/kprobe": "EPERM"}
	nothingAllowed = map[string]string{"map/hash": "EPERM", "map/array": "EPERM", "prog/socket_filter": "EPERM",
		"map/lru_hash": "EPERM", "prog/xdp": "EPERM", "prog/kprobe": "EPERM"}
)

func TestPodmanCDIDevice(t *testing.T) {
	e := setup(t)
	res, err := e.podmanRun(t, append(e.userns(), "--device", "bpfgate.dev/bpf=demo")...)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, demoAllowed)

	// Another profile, other rights: xdp needs CAP_NET_ADMIN in the container.
	res, err = e.podmanRun(t, append(e.userns(), "--cap-add", "net_admin", "--device", "bpfgate.dev/bpf=xdp")...)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, map[string]string{"map/lru_hash": "ok", "prog/xdp": "ok", "map/hash": "EPERM", "prog/socket_filter": "EPERM"})
}

func TestPodmanWithoutDevice(t *testing.T) {
	e := setup(t)
	res, err := e.podmanRun(t, e.userns()...)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, nothingAllowed)
}

func TestPodmanHooksDir(t *testing.T) {
	e := setup(t)
	res, err := e.podmanRun(t, append([]string{"--hooks-dir", e.hooks, "--annotation", "io.bpfgate.profile=demo"}, e.userns()...)...)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, demoAllowed)
	// The hook does nothing for containers without the annotation.
	res, err = e.podmanRun(t, append([]string{"--hooks-dir", e.hooks}, e.userns()...)...)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, nothingAllowed)
}

func TestPodmanRefusals(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"no user namespace", []string{"--cap-add", "bpf", "--device", "bpfgate.dev/bpf=demo"},
			"has no user namespace of its own, so no BPF token can work in it: run it with one: podman run --userns=auto"},
		{"no CAP_BPF", []string{autoUserNS, "--device", "bpfgate.dev/bpf=demo"},
			"lacks capabilities its BPF token needs: CAP_BPF (podman run --cap-add bpf)"},
		{"xdp without CAP_NET_ADMIN", append(e.userns(), "--device", "bpfgate.dev/bpf=xdp"),
			"CAP_NET_ADMIN (podman run --cap-add net_admin)"},
		{"profile the host does not define", append(e.userns(), "--hooks-dir", e.hooks, "--annotation", "io.bpfgate.profile=net"),
			`profile not allowed by the host: unknown profile "net" (known: demo, linked, xdp)`},
		{"unknown CDI device", append(e.userns(), "--device", "bpfgate.dev/bpf=net"), "bpfgate.dev/bpf=net"},
		// Debian 12's default seccomp profile fails bpf(2) without CAP_SYS_ADMIN.
		{"seccomp profile blocks bpf", []string{autoUserNS, "--cap-add", "bpf", "--device", "bpfgate.dev/bpf=demo"},
			"the container's seccomp profile blocks bpf(2), so no BPF token can help it (bpf(2) would fail with EPERM (operation not permitted)): run the container with bpfgate's seccomp profile: write it with `bpfgate oci-hook seccomp` (/etc/bpfgate/seccomp.json) and pass `--security-opt seccomp=/etc/bpfgate/seccomp.json` to podman run"},
		{"two devices", append(e.userns(), "--cap-add", "net_admin", "--device", "bpfgate.dev/bpf=demo", "--device", "bpfgate.dev/bpf=xdp"),
			"/sys/fs/bpf: a bpffs is already mounted there (one bpfgate device per container)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bpfMounts(t)
			_, err := e.podmanRun(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if after := bpfMounts(t); after != before {
				t.Errorf("host bpffs mounts: %d before, %d after", before, after)
			}
		})
	}
}

// TestPodmanImageSymlink: the image's /linked is an absolute symlink to a
// directory that exists on the host. Resolved against the host's root (the
// init process's root before pivot_root), the mount would land there while
// the hook reports success; resolved inside the rootfs, the path does not
// exist in the image and the container is refused.
func TestPodmanImageSymlink(t *testing.T) {
	e := setup(t)
	before := bpfMounts(t)
	_, err := e.podmanRun(t, append(e.userns(), "--device", "bpfgate.dev/bpf=linked")...)
	const want = "/linked: the profile's path is not a directory in the container's image: create it in the image"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error with %q", err, want)
	}
	if after := bpfMounts(t); after != before {
		t.Errorf("host bpffs mounts: %d before, %d after", before, after)
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(e.hostDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) > 0 {
		t.Errorf("%s is a mount point on the host: %+v", e.hostDir, ms[0])
	}
	if entries, _ := os.ReadDir(e.hostDir); len(entries) > 0 {
		t.Errorf("%s: written to: %v", e.hostDir, entries)
	}
	if left := processesOf(t, e.bpfgate); len(left) > 0 {
		t.Errorf("bpfgate processes left: %v", left)
	}
}

// TestPodmanParallel starts ten containers at once: each gets its own bpffs
// and its own host uids, and afterwards no mount or helper process is left.
func TestPodmanParallel(t *testing.T) {
	e := setup(t)
	before := bpfMounts(t)
	// Each container waits until all ten are up, so that their bpffs
	// instances exist at once (device numbers are reused after an unmount).
	barrier := testutil.PublicDir(t)
	if err := os.Chmod(barrier, 0o777); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	outs := make([]string, 10)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			args := append([]string{"run", "--rm"}, e.userns()...)
			args = append(args, "--device", "bpfgate.dev/bpf=demo", "-v", barrier+":/barrier", e.image, "sh", "-c",
				fmt.Sprintf(`touch /barrier/%d; i=0; while [ $(ls /barrier | wc -l) -lt 10 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; `+
					`grep ' /sys/fs/bpf ' /proc/self/mountinfo | cut -d' ' -f3; cat /proc/self/uid_map; /bin/ebpfcheck`, i))
			outs[i], errs[i] = run("podman", args...)
		}(i)
	}
	wg.Wait()
	devs, hostIDs := map[string]bool{}, map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("container %d: %v", i, err)
		}
		lines := strings.SplitN(outs[i], "\n", 3)
		if len(lines) != 3 {
			t.Fatalf("container %d: %q", i, outs[i])
		}
		dev, idmap, report := lines[0], strings.Fields(lines[1]), lines[2]
		devs[dev] = true
		if len(idmap) != 3 || idmap[0] != "0" {
			t.Fatalf("container %d: uid_map %q", i, lines[1])
		}
		hostIDs[idmap[1]] = true
		var res map[string]string
		if err := json.Unmarshal([]byte(report), &res); err != nil {
			t.Fatalf("container %d: %v: %q", i, err, outs[i])
		}
		expect(t, res, demoAllowed)
	}
	if len(devs) != 10 {
		t.Errorf("the containers share bpffs instances: %v", devs)
	}
	if len(hostIDs) != 10 {
		t.Errorf("the containers share host uids: %v", hostIDs)
	}
	if after := bpfMounts(t); after != before {
		t.Errorf("host bpffs mounts: %d before, %d after", before, after)
	}
	if left := processesOf(t, e.bpfgate); len(left) > 0 {
		t.Errorf("bpfgate processes left: %v", left)
	}
}

func bpfMounts(t *testing.T) int {
	t.Helper()
	ms, err := bpffs.Mounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Other packages' tests mount and unmount their own bpffs (under
	// testutil's temp dirs) while these run; they are not the hook's.
	n := 0
	for _, m := range ms {
		if !strings.HasPrefix(m.Path, filepath.Join(os.TempDir(), "bpfgate-test-")) {
			n++
		}
	}
	return n
}

// processesOf lists the pids running exe.
func processesOf(t *testing.T, exe string) []string {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, d := range entries {
		if target, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe")); err == nil && target == exe {
			out = append(out, d.Name())
		}
	}
	return out
}
