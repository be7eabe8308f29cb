package containers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/ocihook"
)

// crun 1.8.1 (Debian 12) refuses to run anything on a hybrid cgroup layout
// (v1 controllers under /sys/fs/cgroup, a cgroup2 at /sys/fs/cgroup/unified)
// while a controller sits on the v2 hierarchy: here hugetlb does, and crun
// says "cgroups in hybrid mode not supported, drop all controllers from
// cgroupv2". It tells the layout from statfs alone: cgroup2 on
// /sys/fs/cgroup is unified, a tmpfs there with a cgroup2 at unified/ is
// hybrid, a tmpfs without one is legacy (v1), which it supports.
//
// So the crun tests run podman in a mount namespace of its own in which
// /sys/fs/cgroup is a fresh tmpfs holding bind mounts of the host's v1
// hierarchies and no unified/: crun sees a plain v1 layout and puts the
// container in the same v1 cgroups it would use on a v1 host. Nothing
// changes outside that namespace, which ends with the last process in it
// (podman, conmon, the container): moving hugetlb to a v1 hierarchy
// instead would take it off the machine's cgroup2 for every other test
// while it lasts.

// v1OnlyArg, first on the test binary's command line, makes it run the
// rest of the line in such a namespace (cgroupV1Only).
const v1OnlyArg = "-bpfgate-cgroup-v1-only"

const cgroupRoot = "/sys/fs/cgroup"

// cgroupV1Only makes a mount namespace in which cgroupRoot shows only the
// v1 hierarchies and execs args there. It returns only on failure.
func cgroupV1Only(args []string) int {
	// unshare(CLONE_NEWNS) moves only this thread, which exec keeps.
	runtime.LockOSThread()
	err := unix.Unshare(unix.CLONE_NEWNS)
	if err == nil {
		err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	}
	if err == nil {
		err = hideUnified()
	}
	var path string
	if err == nil {
		path, err = exec.LookPath(args[0])
	}
	if err == nil {
		err = unix.Exec(path, args, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", v1OnlyArg, err)
	return 1
}

// hideUnified mounts a tmpfs on cgroupRoot with the v1 hierarchies below it,
// bound from the ones it hides, and the symlinks (cpu,cpuacct -> ...) that
// were there, on a layout other than cgroup2 only. It must run in a private
// mount namespace.
func hideUnified() error {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return err
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return nil // cgroup2 only: crun runs as it is
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(cgroupRoot))
	if err != nil {
		return err
	}
	fds := map[string]int{}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, m := range ms {
		if m.FSType != "cgroup" || filepath.Dir(m.Mountpoint) != cgroupRoot {
			continue
		}
		fd, err := unix.Open(m.Mountpoint, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds[filepath.Base(m.Mountpoint)] = fd
	}
	if len(fds) == 0 {
		return fmt.Errorf("no cgroup v1 hierarchy below %s", cgroupRoot)
	}
	links := map[string]string{}
	entries, err := os.ReadDir(cgroupRoot)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 {
			if links[e.Name()], err = os.Readlink(filepath.Join(cgroupRoot, e.Name())); err != nil {
				return err
			}
		}
	}

	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("tmpfs", cgroupRoot, "tmpfs", flags, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", cgroupRoot, err)
	}
	for name, fd := range fds {
		target := filepath.Join(cgroupRoot, name)
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the %s hierarchy: %w", name, err)
		}
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(cgroupRoot, name)); err != nil {
			return err
		}
	}
	// Nothing may create a directory where a hierarchy is missing.
	return unix.Mount("", cgroupRoot, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|flags, "")
}

// crun is the shared set-up whose podman helpers (podmanRun, podmanStart,
// runPodman) run podman --runtime crun in a v1-only mount namespace.
func (e *env) crun(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("crun"); err != nil {
		testutil.Skip(t, "crun is not installed (apt-get install crun)")
	}
	c := *e
	c.podman = []string{"/proc/self/exe", v1OnlyArg, "podman", "--runtime", "crun"}
	return &c
}

// TestCrunPodman runs ebpfcheck under crun the three ways a container gets
// (or does not get) a profile: the CDI device with the usual flags, the
// annotation alone with the precreate entry, and neither.
func TestCrunPodman(t *testing.T) {
	e := setup(t)
	c := e.crun(t)
	before := bpfMounts(t)
	if unifiedControllers(t) != "" {
		// What the v1-only namespace is for.
		const hybrid = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
		_, err := e.runPodman("--runtime", "crun", "run", "--rm", e.image, "true")
		switch {
		case err == nil:
			t.Log("crun runs on this hybrid layout without the v1-only namespace: the workaround can go")
		case !strings.Contains(err.Error(), hybrid):
			t.Errorf("crun on the hybrid layout: got %v, want %q", err, hybrid)
		}
	}
	for _, tc := range []struct {
		name  string
		flags []string
		want  map[string]string
	}{
		{"CDI device", append(e.userns(), "--device", "bpfgate.dev/bpf=demo"), demoAllowed},
		{"precreate", []string{"--hooks-dir", e.precreateHooks(t), autoUserNS, "--annotation", "io.bpfgate.profile=demo"}, demoAllowed},
		{"no device", e.userns(), nothingAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.podmanRun(t, tc.flags...)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, res, tc.want)
		})
	}
	if after := bpfMounts(t); after != before {
		t.Errorf("host bpffs mounts: %d before, %d after", before, after)
	}
}

// unifiedControllers reads the controllers bound to the host's cgroup2 in
// a hybrid layout ("" without one).
func unifiedControllers(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(cgroupRoot, "unified", "cgroup.controllers"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// v1Cgroups maps each v1 hierarchy below cgroupRoot to process pid's
// cgroup in it.
func v1Cgroups(t *testing.T, pid string) map[string]string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[1] == "" {
			continue
		}
		h := strings.TrimPrefix(f[1], "name=")
		if _, err := os.Stat(filepath.Join(cgroupRoot, h)); err == nil {
			out[h] = f[2]
		}
	}
	return out
}

// TestCrunCgroups: under crun in the v1-only namespace, the container's
// limits are set in its own v1 cgroups and enforced, podman's own cgroup
// handling (stats, pause) works, the host's cgroup2 keeps its controllers
// meanwhile, and the container's cgroups go with it.
func TestCrunCgroups(t *testing.T) {
	e := setup(t)
	c := e.crun(t)
	unified := unifiedControllers(t)
	var cgroups map[string]string
	// Registered first, so run after podmanStart removed the container.
	t.Cleanup(func() {
		for h, p := range cgroups {
			if _, err := os.Stat(filepath.Join(cgroupRoot, h, p)); !os.IsNotExist(err) {
				t.Errorf("the container's %s cgroup %s is left (%v)", h, p, err)
			}
		}
	})
	id := c.podmanStart(t, autoUserNS, "--memory", "64m", "--pids-limit", "16")
	out, err := c.runPodman("inspect", "--format", "{{.OCIRuntime}} {{.State.Pid}}", id)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != "crun" {
		t.Fatalf("runtime and pid: %q, want crun", out)
	}
	cgroups = v1Cgroups(t, f[1])
	for _, h := range []string{"memory", "pids", "freezer"} {
		if !strings.Contains(cgroups[h], id) {
			t.Fatalf("%s cgroup %q: not the container's own", h, cgroups[h])
		}
	}
	read := func(h, file string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(cgroupRoot, h, cgroups[h], file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	for _, l := range []struct{ h, file, want string }{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"pids", "pids.max", "16"},
	} {
		if got := read(l.h, l.file); got != l.want {
			t.Errorf("%s: %s, want %s", l.file, got, l.want)
		}
	}
	// The container sees its own cgroups at /sys/fs/cgroup.
	out, err = c.runPodman("exec", id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max")
	if err != nil || out != "67108864\n16\n" {
		t.Errorf("limits inside: %q, %v", out, err)
	}
	_, err = c.runPodman("exec", id, "sh", "-c", "i=0; while [ $i -lt 32 ]; do sleep 1 & i=$((i+1)); done")
	if err == nil || !strings.Contains(err.Error(), "can't fork") {
		t.Errorf("32 processes under a pids limit of 16: %v", err)
	}
	out, err = c.runPodman("stats", "--no-stream", "--format", "{{.MemUsage}}", id)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "/ 67.11MB") {
		t.Errorf("podman stats: %q, %v", out, err)
	}
	for _, step := range []struct{ cmd, want string }{{"pause", "FROZEN"}, {"unpause", "THAWED"}} {
		if _, err := c.runPodman(step.cmd, id); err != nil {
			t.Fatal(err)
		}
		if got := read("freezer", "freezer.state"); got != step.want {
			t.Errorf("after podman %s: freezer.state %s, want %s", step.cmd, got, step.want)
		}
	}
	if got := unifiedControllers(t); got != unified {
		t.Errorf("the host's cgroup2 controllers: %q while a crun container runs, %q before", got, unified)
	}
}

// TestCrunRefusals: crun runs hooks with their output on /dev/null (unless
// the container's run.oci.hooks.stderr annotation names a file) and podman
// shows crun's own line, so a refused container's podman error names the
// hook and its exit status, and bpfgate's reason reaches that file word
// for word.
func TestCrunRefusals(t *testing.T) {
	e := setup(t)
	c := e.crun(t)
	hooks := e.precreateHooks(t)
	podmanErr := "Error: OCI runtime error: crun: error executing hook `" + e.bpfgate + "` (exit code: 1)"
	reason := regexp.MustCompile(`^bpfgate: container ([0-9a-f]{12}): ` + regexp.QuoteMeta(ocihook.ErrNoUserNS.Error()+
		": run it with one: podman run --userns=auto:size=65536, or --uidmap/--gidmap with a host id range no other container uses") + "\n$")
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"CDI device", []string{"--cap-add", "bpf", "--security-opt", "seccomp=" + e.seccomp, "--device", "bpfgate.dev/bpf=demo"}},
		{"precreate", []string{"--hooks-dir", hooks, "--annotation", "io.bpfgate.profile=demo"}},
	} {
		t.Run(tc.name+" without a user namespace", func(t *testing.T) {
			before := bpfMounts(t)
			hookErr := filepath.Join(t.TempDir(), "hook.stderr")
			_, err := c.podmanRun(t, append(tc.flags, "--annotation", "run.oci.hooks.stderr="+hookErr)...)
			if err == nil {
				t.Fatal("the container ran")
			}
			lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
			if last := lines[len(lines)-1]; last != podmanErr {
				t.Errorf("podman's error: %q, want %q", last, podmanErr)
			}
			data, _ := os.ReadFile(hookErr)
			m := reason.FindSubmatch(data)
			if m == nil {
				t.Fatalf("the hook's stderr: %q, want %q", data, reason)
			}
			// crun made the container's cgroups before it ran the hook.
			left, err := filepath.Glob(filepath.Join(cgroupRoot, "*", "libpod_parent", "libpod-"+string(m[1])+"*"))
			if err != nil || len(left) > 0 {
				t.Errorf("the refused container's cgroups are left: %v %v", left, err)
			}
			if after := bpfMounts(t); after != before {
				t.Errorf("host bpffs mounts: %d before, %d after", before, after)
			}
		})
	}
}
