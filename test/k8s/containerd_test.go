package k8s

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// Containerd is a containerd of the run's own, with the CRI plugin on:
// everything it writes is under Dir, and it runs in a mount namespace of
// its own (see the package doc). A kubelet is pointed at it with
// --container-runtime-endpoint Endpoint().
type Containerd struct {
	Dir       string // root of everything below
	Socket    string // the gRPC (CRI) socket
	CDIDir    string // the only CDI spec directory it reads
	NRISocket string // NRI is on, on this socket, for NRI plugins
	// CgroupParent is the cgroup (relative to each hierarchy's root) its
	// pods go below: the harness removes it at the end.
	CgroupParent string

	bin     map[string]string // containerd, ctr, crictl, runc, the shim
	cmd     *exec.Cmd
	exited  chan error
	mountNS uint64 // inode of its mount namespace
	log     string
	lock    *os.File // runDirLock, held shared while it runs
}

// runDir is where containerd puts shim sockets (s/) and FIFOs (fifo/),
// whatever its configuration says: a private tmpfs in its namespace.
const runDir = "/run/containerd"

// runDirLock is held shared by every harness while its containerd runs.
// It says "made" when a harness made runDir (the mount point of the
// private tmpfs, which must exist on the host): the last harness out, the
// one that gets it exclusively, then removes runDir again.
const runDirLock = "/run/bpfgate-k8s.lock"

func (c *Containerd) takeRunDir() error {
	lock, err := os.OpenFile(runDirLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	c.lock = lock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	if err := os.Mkdir(runDir, 0o711); err == nil {
		if _, err := lock.WriteAt([]byte("made"), 0); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	return unix.Flock(int(lock.Fd()), unix.LOCK_SH)
}

func (c *Containerd) releaseRunDir() {
	if c.lock == nil {
		return
	}
	c.lock.Close()
	lock, err := os.OpenFile(runDirLock, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer lock.Close()
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // another harness runs
	}
	buf := make([]byte, 4)
	if n, _ := lock.ReadAt(buf, 0); string(buf[:n]) == "made" && os.Remove(runDir) == nil {
		lock.Truncate(0)
	}
}

// cmdTimeout bounds every command the harness runs.
const cmdTimeout = 2 * time.Minute

// k8sBins are the binaries of the cached build a containerd needs.
var k8sBins = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "crictl", "cni/loopback"}

// StartContainerd starts a containerd in dir (which must exist and be
// empty) and waits for its socket. Stop it with Stop.
func StartContainerd(tb testing.TB, dir string) (*Containerd, error) {
	tb.Helper()
	c := &Containerd{
		Dir:          dir,
		Socket:       filepath.Join(dir, "containerd.sock"),
		CDIDir:       filepath.Join(dir, "cdi"),
		NRISocket:    filepath.Join(dir, "nri.sock"),
		CgroupParent: fmt.Sprintf("/bpfgate-k8s-%x", sha256.Sum256([]byte(dir)))[:len("/bpfgate-k8s-")+16],
		bin:          map[string]string{},
		log:          filepath.Join(dir, "containerd.log"),
	}
	for _, b := range k8sBins {
		c.bin[b] = testutil.K8sBin(tb, b)
	}
	for _, d := range []string{"cdi", "cni-bin", "cni-conf", "nri/plugins", "nri/conf.d", "root", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := c.writeConfig(); err != nil {
		return nil, err
	}
	if err := c.start(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Containerd) cgroupParent() string { return c.CgroupParent }

// Endpoint is the CRI endpoint for crictl and kubelet.
func (c *Containerd) Endpoint() string { return "unix://" + c.Socket }

// cniPlugin puts eth0 in the pod's network namespace with an address, as
// containerd requires of a pod network: one end of a veth pair whose other
// end stays in the same namespace (this kernel has no dummy module), so
// nothing of it appears on the host. Addresses are from TEST-NET-2.
const cniPlugin = `#!/bin/sh
set -eu
netns() { nsenter --net="$CNI_NETNS" "$@"; }
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
ADD)
	cat >/dev/null
	n=$(( $(printf %s "$CNI_CONTAINERID" | cksum | cut -d' ' -f1) % 250 + 2 ))
	netns ip link add "$CNI_IFNAME" type veth peer name bpfgate-peer
	netns ip addr add "198.51.100.$n/24" dev "$CNI_IFNAME"
	netns ip link set bpfgate-peer up
	netns ip link set "$CNI_IFNAME" up
	printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"198.51.100.%d/24","interface":0}]}\n' \
		"$CNI_IFNAME" "$CNI_NETNS" "$n" ;;
DEL)
	cat >/dev/null
	if [ -n "${CNI_NETNS:-}" ] && [ -e "$CNI_NETNS" ]; then netns ip link del "$CNI_IFNAME" 2>/dev/null || true; fi ;;
*) cat >/dev/null ;;
esac
`

func (c *Containerd) writeConfig() error {
	d := func(name string) string { return filepath.Join(c.Dir, name) }
	// The runc options' Root keeps runc's state out of /run/containerd/runc;
	// netns_mounts_under_state_dir keeps the pods' network namespaces out of
	// /run/netns. No CAP_SYS_RESOURCE is asked for (restrict_oom_score_adj).
	config := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %[5]q
[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = true
  cdi_spec_dirs = [%[6]q]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[7]q
        Root = %[8]q
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[9]q]
    conf_dir = %[10]q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.internal.v1.opt']
  path = %[11]q
[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = %[12]q
  plugin_path = %[13]q
  plugin_config_path = %[14]q
`, d("root"), d("state"), c.Socket, c.Socket+".ttrpc", pauseImage, c.CDIDir,
		c.bin["runc"], d("runc"), d("cni-bin"), d("cni-conf"), d("opt"),
		c.NRISocket, d("nri/plugins"), d("nri/conf.d"))
	if err := os.WriteFile(d("config.toml"), []byte(config), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(d("cni-bin/bpfgate-test-veth"), []byte(cniPlugin), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(c.bin["cni/loopback"], d("cni-bin/loopback")); err != nil {
		return err
	}
	conf := `{"cniVersion":"1.0.0","name":"bpfgate-test","plugins":[{"type":"bpfgate-test-veth"}]}`
	if err := os.WriteFile(d("cni-conf/10-bpfgate-test.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	crictl := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 60\n", c.Endpoint(), c.Endpoint())
	return os.WriteFile(d("crictl.yaml"), []byte(crictl), 0o644)
}

// start runs containerd under sh in a new mount namespace (Go makes its
// mounts private), where sh first mounts a tmpfs on runDir.
func (c *Containerd) start() error {
	if err := c.takeRunDir(); err != nil {
		return err
	}
	logf, err := os.Create(c.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	// libcni keeps its cache in /var/lib/cni whatever the configuration
	// says: a private tmpfs there (or on /var/lib, where there is none to
	// mount on, rather than make it on the host).
	c.cmd = exec.Command("sh", "-c", `mount -t tmpfs -o mode=0711 bpfgate-k8s "$0" &&
if [ -d /var/lib/cni ]; then mount -t tmpfs -o mode=0700 bpfgate-k8s /var/lib/cni
else mount -t tmpfs -o mode=0755 bpfgate-k8s /var/lib; fi && exec "$@"`,
		runDir, c.bin["containerd"], "--config", filepath.Join(c.Dir, "config.toml"))
	// The shims find runc and the CNI plugins' helpers on PATH.
	c.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.bin["containerd"])+":"+os.Getenv("PATH"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setsid: true}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	c.exited = make(chan error, 1)
	go func() { c.exited <- c.cmd.Wait() }()
	// Stop kills whatever is left in this namespace: it must not be ours.
	ns, err := nsInode(c.cmd.Process.Pid, "mnt")
	if err != nil {
		return err
	}
	if own, err := nsInode(os.Getpid(), "mnt"); err != nil || own == ns {
		return fmt.Errorf("containerd did not get a mount namespace of its own (%v)", err)
	}
	c.mountNS = ns
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.ctr("version"); err == nil {
			return nil
		}
		select {
		case err := <-c.exited:
			c.exited <- err
			return fmt.Errorf("containerd exited: %v\n%s", err, c.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not answer on %s in 30 s\n%s", c.Socket, c.logTail())
		}
	}
}

func (c *Containerd) logTail() string {
	data, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// nsInode is the inode of a namespace of pid.
func nsInode(pid int, ns string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// run runs a command with the harness's timeout and returns its stdout, or
// an error with its stderr.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// ctr runs ctr on this containerd, in the namespace the CRI plugin uses.
func (c *Containerd) ctr(args ...string) (string, error) {
	return run(c.bin["ctr"], append([]string{"--address", c.Socket, "--namespace", "k8s.io"}, args...)...)
}

// Crictl runs crictl on this containerd.
func (c *Containerd) Crictl(args ...string) (string, error) {
	return run(c.bin["crictl"], append([]string{"--config", filepath.Join(c.Dir, "crictl.yaml")}, args...)...)
}

// Import imports an OCI archive (see image.writeArchive).
func (c *Containerd) Import(archive string) error {
	_, err := c.ctr("images", "import", "--all-platforms", archive)
	return err
}

// Stop removes every pod, stops containerd and whatever is left in its
// mount namespace (shims), removes the pods' cgroups and, if it made it and
// no other harness runs, runDir. It returns what it could not clean.
func (c *Containerd) Stop() []string {
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
		// The shims outlive containerd; nothing else shares its namespace.
		for i := 0; ; i++ {
			pids := c.processes()
			if len(pids) == 0 {
				break
			}
			if i == 50 {
				left = append(left, fmt.Sprintf("processes in containerd's mount namespace: %v", pids))
				break
			}
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	left = append(left, c.removeCgroups()...)
	c.releaseRunDir()
	left = append(left, c.mounts()...)
	return left
}

// processes lists the processes in containerd's mount namespace.
func (c *Containerd) processes() []int { return nsProcesses(c.mountNS) }

// nsProcesses lists the processes in the mount namespace whose inode is
// ns, never the test's own.
func nsProcesses(ns uint64) []int {
	if own, err := nsInode(os.Getpid(), "mnt"); ns == 0 || err != nil || own == ns {
		return nil // never the test's own namespace
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ino, err := nsInode(pid, "mnt"); err == nil && ino == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroups removes CgroupParent from every hierarchy, killing what
// still runs in it (nothing, when the pods were removed).
func (c *Containerd) removeCgroups() []string {
	return removeCgroupTrees(c.CgroupParent, true)
}

// removeCgroupTrees removes the cgroup rel (with everything below it,
// deepest first) from every v1 hierarchy and, with unified, from the
// cgroup2 mount at /sys/fs/cgroup; it returns what it could not remove.
func removeCgroupTrees(rel string, unified bool) []string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", rel))
	if d := filepath.Join("/sys/fs/cgroup", rel); unified && isDir(d) {
		dirs = append(dirs, d)
	}
	var left []string
	for _, d := range dirs {
		var subs []string
		filepath.WalkDir(d, func(path string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				subs = append(subs, path)
			}
			return nil
		})
		for i := len(subs) - 1; i >= 0; i-- {
			if err := removeCgroup(subs[i]); err != nil {
				left = append(left, "cgroup "+err.Error())
			}
		}
	}
	return left
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// removeCgroup kills the processes in a cgroup and removes it.
func removeCgroup(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, perr := strconv.Atoi(f); perr == nil {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// mounts lists the host's mounts below Dir.
func (c *Containerd) mounts() []string {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(c.Dir))
	if err != nil {
		return []string{err.Error()}
	}
	var left []string
	for _, m := range ms {
		left = append(left, "mount "+m.Mountpoint)
	}
	return left
}

// TestContainerdIsolation: while a pod runs, nothing of the harness's
// containerd shows on the host: no mount below its directory or on
// runDir, nothing in runDir, the pod's network namespace under its state
// directory; its NRI socket is there for NRI plugins.
func TestContainerdIsolation(t *testing.T) {
	e := setup(t)
	s, err := e.start(t, e.configs(t, pod{command: []string{"/bin/sleep", "60"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.remove(t, s)

	ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(m.Mountpoint, e.dir+"/") && m.Mountpoint != runDir, false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("host mount: %s (%s)", m.Mountpoint, m.FSType)
	}
	if entries, err := os.ReadDir(runDir); err != nil {
		t.Errorf("%s: %v (it must exist while a harness runs)", runDir, err)
	} else if len(entries) > 0 {
		t.Errorf("%s on the host has %d entries, e.g. %s", runDir, len(entries), entries[0].Name())
	}
	if fi, err := os.Stat(e.cd.NRISocket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("NRI socket %s: %v", e.cd.NRISocket, err)
	}
	out, err := e.cd.Crictl("inspectp", "--output", "json", s.pod)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	netns := ""
	for _, ns := range info.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			netns = ns.Path
		}
	}
	if !strings.HasPrefix(netns, e.cd.Dir+"/") {
		t.Errorf("the pod's network namespace is %q, not under %s", netns, e.cd.Dir)
	}
}
