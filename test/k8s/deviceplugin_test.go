package k8s

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// devicePlugin is `bpfgate k8s device-plugin` on a kubelet, its JSON
// events read as they come.
type devicePlugin struct {
	cmd    *exec.Cmd
	events chan map[string]any
	exited chan error
}

func (e *env) startDevicePlugin(t testing.TB, k *Kubelet) *devicePlugin {
	t.Helper()
	cmd := exec.Command(e.bpfgate, "--config", e.config, "--json", "k8s", "device-plugin",
		"--kubelet-dir", k.DevicePlugins, "--devices", "4")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devicePlugin{cmd: cmd, events: make(chan map[string]any, 64), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				p.events <- ev
			}
		}
		p.exited <- cmd.Wait()
	}()
	return p
}

// wait waits for the plugin to report action.
func (p *devicePlugin) wait(t testing.TB, action string) map[string]any {
	t.Helper()
	for {
		select {
		case ev := <-p.events:
			if ev["action"] == action {
				return ev
			}
		case err := <-p.exited:
			t.Fatalf("the device plugin exited (%v) before %s", err, action)
		case <-time.After(30 * time.Second):
			t.Fatalf("the device plugin did not report %s in 30 s", action)
		}
	}
}

func (p *devicePlugin) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(unix.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("the device plugin on SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("the device plugin still ran 15 s after SIGTERM")
		<-p.exited
	}
}

// kubeletCheck runs ebpfcheck in a static pod and decodes its report,
// after checking that the container has a user namespace of its own.
func kubeletCheck(t *testing.T, k *Kubelet, p staticPod) map[string]string {
	t.Helper()
	out, err := kubeletTry(t, k, p, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ebpfcheckReport(t, out)
}

// kubeletTry runs p as a static pod and returns its output.
func kubeletTry(t *testing.T, k *Kubelet, p staticPod, timeout time.Duration) (string, error) {
	t.Helper()
	p.command = []string{"/bin/sh", "-c", "cat /proc/self/uid_map; exec /bin/ebpfcheck"}
	if err := k.Run(p); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Remove(p.name); err != nil {
			t.Error(err)
		}
	}()
	out, err := k.Output(p.name+"-"+k.Node, timeout)
	if err != nil {
		err = fmt.Errorf("%w\nkubelet's lines about %s:\n%s", err, p.name, k.LogLines(p.name))
	}
	return out, err
}

// ebpfcheckReport checks the uid_map line before ebpfcheck's report (a user
// namespace of its own) and decodes the report.
func ebpfcheckReport(t *testing.T, out string) map[string]string {
	t.Helper()
	uidMap, report, _ := strings.Cut(out, "\n")
	if f := strings.Fields(uidMap); len(f) != 3 || f[0] != "0" || f[1] == "0" {
		t.Errorf("the container's uid_map is %q: not a user namespace of its own", uidMap)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(report), &res); err != nil {
		t.Fatalf("ebpfcheck: %v: %q", err, out)
	}
	return res
}

// TestKubeletDevicePlugin: a standalone kubelet with bpfgate's device
// plugin runs a static pod (hostUsers: false) asking for
// bpfgate.dev/bpf-demo, which gets exactly demo's rights, and one without
// it, which gets none; after kubelet restarts, the plugin registers again
// and a new pod gets the device.
func TestKubeletDevicePlugin(t *testing.T) {
	e := setup(t)
	k, err := StartKubelet(t, filepath.Join(e.dir, "kubelet"), e.cd, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range k.Stop() {
			t.Errorf("left by kubelet: %s", l)
		}
	}()
	p := e.startDevicePlugin(t, k)
	ev := p.wait(t, "registered")
	if ev["resource"] != "bpfgate.dev/bpf-demo" {
		t.Fatalf("registered %v, want bpfgate.dev/bpf-demo", ev)
	}
	demo := map[string]int{"bpfgate.dev/bpf-demo": 1}
	t.Run("device", func(t *testing.T) {
		expect(t, kubeletCheck(t, k, staticPod{name: "dp-demo", limits: demo}), demoAllowed)
	})
	t.Run("no device", func(t *testing.T) {
		expect(t, kubeletCheck(t, k, staticPod{name: "dp-none"}), nothingAllowed)
	})
	t.Run("after kubelet restart", func(t *testing.T) {
		begin := time.Now()
		if err := k.Restart(); err != nil {
			t.Fatal(err)
		}
		p.wait(t, "kubelet_restarted")
		p.wait(t, "registered")
		t.Logf("kubelet restarted and the plugin registered again in %v", time.Since(begin).Round(time.Millisecond))
		// Once in CI, under load, the first pod after the restart got no
		// container in 90 s (the cause is not established: perhaps
		// kubelet admitted it before the devices were healthy again,
		// and it does not admit a static pod twice). A second pod, made
		// later, must get the device; kubelet's lines about the first
		// are logged.
		out, err := kubeletTry(t, k, staticPod{name: "dp-restart", limits: demo}, 45*time.Second)
		if err != nil {
			t.Logf("first pod after the restart: %v", err)
			out, err = kubeletTry(t, k, staticPod{name: "dp-restart2", limits: demo}, 90*time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
		expect(t, ebpfcheckReport(t, out), demoAllowed)
	})
	p.stop(t)
	entries, _ := os.ReadDir(k.DevicePlugins)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "bpfgate-") {
			t.Errorf("the device plugin left %s in %s", en.Name(), k.DevicePlugins)
		}
	}
	if t.Failed() {
		fmt.Println("kubelet's log:\n" + k.LogTail())
	}
}
