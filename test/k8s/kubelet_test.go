package k8s

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// Kubelet is a standalone kubelet of the run's own on a harness's
// containerd: it runs the static pods of Manifests. Everything it writes
// is under Dir, its pods' cgroups below CgroupRoot. kubelet has a few fixed
// paths whatever its configuration says; it runs in a mount namespace of
// its own where they are private:
//
//   - /var/lib (a tmpfs) with DevicePlugins bound on
//     /var/lib/kubelet/device-plugins: device plugins serve in
//     DevicePlugins, which is the same directory;
//   - /var/log (a tmpfs) for /var/log/containers (pod logs go to PodLogs);
//   - the kernel settings kubelet insists on (vm.overcommit_memory,
//     kernel.panic, ...) read as files with the values it wants, and
//     protectKernelDefaults makes it fail rather than write them: it never
//     changes the host's.
//
// Its pods run in Namespace; Stop removes them, their cgroups and
// everything else it made.
type Kubelet struct {
	Dir           string
	Manifests     string // static pod manifests, read every second
	DevicePlugins string // kubelet's device-plugin directory, as the host sees it
	PodLogs       string
	CgroupRoot    string // relative to each hierarchy's root
	Node          string // static pods are named NAME-Node

	cd     *Containerd
	bin    string
	cmd    *exec.Cmd
	exited chan error
	log    string
	// kubeconfig, when set, makes it a node of that API server.
	kubeconfig string
}

// KubeletNamespace is the namespace of the harness's static pods.
const KubeletNamespace = "bpfgate-kubelet"

// kubeletSysctls are the values kubelet checks at start, as files.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// StartKubelet starts a kubelet in dir (created if need be) on cd:
// standalone, or the node Node of the API server kubeconfig leads to.
func StartKubelet(tb testing.TB, dir string, cd *Containerd, kubeconfig string) (*Kubelet, error) {
	tb.Helper()
	k := &Kubelet{
		Dir:           dir,
		Manifests:     filepath.Join(dir, "manifests"),
		DevicePlugins: filepath.Join(dir, "device-plugins"),
		PodLogs:       filepath.Join(dir, "pod-logs"),
		CgroupRoot:    fmt.Sprintf("/bpfgate-kubelet-%x", sha256.Sum256([]byte(dir)))[:len("/bpfgate-kubelet-")+16],
		Node:          "bpfgate-node",
		cd:            cd,
		bin:           testutil.K8sBin(tb, "kubelet"),
		log:           filepath.Join(dir, "kubelet.log"),
		kubeconfig:    kubeconfig,
	}
	for _, d := range []string{"manifests", "device-plugins", "pod-logs", "root", "sysctl"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// kubelet's cgroupfs driver wants its root in every hierarchy.
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	for _, h := range hierarchies {
		if err := os.Mkdir(filepath.Join(filepath.Dir(h), k.CgroupRoot), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			k.Stop()
			return nil, err
		}
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %q
fileCheckFrequency: 1s
syncFrequency: 5s
containerRuntimeEndpoint: %q
podLogsDir: %q
cgroupDriver: cgroupfs
cgroupRoot: %q
enableServer: false
healthzPort: 0
readOnlyPort: 0
failSwapOn: false
protectKernelDefaults: true
makeIPTablesUtilChains: false
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
featureGates: {UserNamespacesSupport: true}
failCgroupV1: false
`, k.Manifests, cd.Endpoint(), k.PodLogs, k.CgroupRoot)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
		k.Stop()
		return nil, err
	}
	for name, v := range kubeletSysctls {
		if err := os.WriteFile(filepath.Join(dir, "sysctl", strings.ReplaceAll(name, "/", ".")), []byte(v+"\n"), 0o644); err != nil {
			k.Stop()
			return nil, err
		}
	}
	if err := k.start(); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

// start runs kubelet under sh in a new mount namespace (Go makes its
// mounts private), where sh first hides kubelet's fixed paths.
func (k *Kubelet) start() error {
	script := `set -e
d=$1; shift
for f in "$d"/sysctl/*; do
	n=$(basename "$f" | tr . /)
	mount --bind "$f" "/proc/sys/$n"
done
mount -t tmpfs -o mode=0755 bpfgate-kubelet /var/lib
mkdir -p /var/lib/kubelet/device-plugins
mount --bind "$d/device-plugins" /var/lib/kubelet/device-plugins
mount -t tmpfs -o mode=0755 bpfgate-kubelet /var/log
exec "$@"`
	logf, err := os.OpenFile(k.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-c", script, "sh", k.Dir, k.bin,
		"--config", filepath.Join(k.Dir, "config.yaml"), "--root-dir", filepath.Join(k.Dir, "root"),
		"--cert-dir", filepath.Join(k.Dir, "root", "pki"), "--hostname-override", k.Node, "--v=2"}
	if k.kubeconfig != "" {
		args = append(args, "--kubeconfig", k.kubeconfig)
	}
	k.cmd = exec.Command("sh", args...)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		return fmt.Errorf("start kubelet: %w", err)
	}
	k.exited = make(chan error, 1)
	go func() { k.exited <- k.cmd.Wait() }()
	// kubelet is up when its device manager listens.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if fi, err := os.Stat(filepath.Join(k.DevicePlugins, "kubelet.sock")); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		select {
		case err := <-k.exited:
			k.exited <- err
			return fmt.Errorf("kubelet exited: %v\n%s", err, k.LogTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubelet did not listen in %s in 60 s\n%s", k.DevicePlugins, k.LogTail())
		}
	}
}

// stop stops kubelet (its pods keep running).
func (k *Kubelet) stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	k.cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(15 * time.Second):
		k.cmd.Process.Kill()
		<-k.exited
	}
	k.cmd = nil
}

// Restart stops kubelet and starts it again, as a node's kubelet restarts:
// it removes what is in its device-plugin directory.
func (k *Kubelet) Restart() error {
	k.stop()
	os.Remove(filepath.Join(k.DevicePlugins, "kubelet.sock"))
	return k.start()
}

// LogTail is the end of kubelet's log.
func (k *Kubelet) LogTail() string {
	data, _ := os.ReadFile(k.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// LogLines are the lines of kubelet's log that mention s (at most 40).
func (k *Kubelet) LogLines(s string) string {
	data, _ := os.ReadFile(k.log)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return strings.Join(out, "\n")
}

// Stop stops kubelet, removes its pods and their cgroups; it returns what
// it could not clean. Dir stays for the caller to remove.
func (k *Kubelet) Stop() []string {
	k.stop()
	var left []string
	if k.cd != nil {
		out, err := k.cd.Crictl("pods", "-q", "--namespace", KubeletNamespace)
		if err != nil {
			left = append(left, "kubelet's pods: "+err.Error())
		}
		for _, id := range strings.Fields(out) {
			if _, err := k.cd.Crictl("rmp", "--force", id); err != nil {
				left = append(left, "kubelet's pod: "+err.Error())
			}
		}
	}
	return append(left, removeCgroupTrees(k.CgroupRoot, false)...)
}

// staticPod is a static pod of one container "c" with the test image,
// in a user namespace of its own, with CAP_BPF.
type staticPod struct {
	name     string
	command  []string
	limits   map[string]int
	hostUser bool
}

// Run writes the pod's manifest.
func (k *Kubelet) Run(p staticPod) error {
	limits := ""
	for r, n := range p.limits {
		limits += fmt.Sprintf("%q: %d, ", r, n)
	}
	cmd, _ := json.Marshal(p.command)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  hostUsers: %t
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: %s
    securityContext:
      capabilities: {add: [BPF]}
    resources:
      limits: {%s}
`, p.name, KubeletNamespace, p.hostUser, testImage, cmd, strings.TrimSuffix(limits, ", "))
	tmp := filepath.Join(k.Dir, "."+p.name+".yaml")
	if err := os.WriteFile(tmp, []byte(manifest), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(k.Manifests, p.name+".yaml"))
}

// Output waits (up to timeout) for the container "c" of a pod (a static
// pod's name is NAME-Node) to exit and returns what it wrote.
func (k *Kubelet) Output(pod string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := k.cd.Crictl("ps", "-a", "-o", "json", "--label", "io.kubernetes.pod.name="+pod,
			"--label", "io.kubernetes.pod.namespace="+KubeletNamespace)
		if err != nil {
			return "", err
		}
		var ps struct {
			Containers []struct {
				State        string            `json:"state"`
				Labels       map[string]string `json:"labels"`
				PodSandboxID string            `json:"podSandboxId"`
			} `json:"containers"`
		}
		if err := json.Unmarshal([]byte(out), &ps); err != nil {
			return "", fmt.Errorf("crictl ps: %w: %q", err, out)
		}
		if len(ps.Containers) > 0 && ps.Containers[0].State == "CONTAINER_EXITED" {
			uid := ps.Containers[0].Labels["io.kubernetes.pod.uid"]
			data, err := os.ReadFile(filepath.Join(k.PodLogs, KubeletNamespace+"_"+pod+"_"+uid, "c", "0.log"))
			if err != nil {
				return "", err
			}
			var lines []string
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if f := strings.SplitN(line, " ", 4); len(f) == 4 {
					lines = append(lines, f[3])
				}
			}
			return strings.Join(lines, "\n"), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pod %s: no exited container after %v\nkubelet's log:\n%s", pod, timeout, k.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Remove removes a static pod's manifest and waits for kubelet to remove
// the pod's sandbox.
func (k *Kubelet) Remove(name string) error {
	if err := os.Remove(filepath.Join(k.Manifests, name+".yaml")); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := k.cd.Crictl("pods", "-q", "--state", "ready", "--label", "io.kubernetes.pod.name="+name+"-"+k.Node)
		if err == nil && strings.TrimSpace(out) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("static pod %s still ready a minute after its manifest was removed: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
