package k8s

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// draObjects are a claim on demo's DeviceClass (which bpfgate k8s dra
// device-classes makes) and a pod with that claim.
const draObjects = `apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: %[1]s}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: bpf-demo, namespace: %[1]s}
spec:
  devices:
    requests:
    - name: bpf
      exactly: {deviceClassName: bpfgate-demo}
---
apiVersion: v1
kind: Pod
metadata: {name: dra-demo, namespace: %[1]s}
spec:
  hostUsers: false
  automountServiceAccountToken: false
  restartPolicy: Never
  # No controller manager removes the not-ready taint kubelet registers with.
  tolerations: [{operator: Exists}]
  resourceClaims:
  - {name: bpf, resourceClaimName: bpf-demo}
  containers:
  - name: c
    image: %[2]s
    imagePullPolicy: Never
    command: [/bin/sh, -c, "cat /proc/self/uid_map; exec /bin/ebpfcheck"]
    securityContext:
      capabilities: {add: [BPF]}
    resources:
      claims: [{name: bpf}]
`

// TestDRA: with a control plane (etcd, API server, scheduler) and a
// kubelet as its node, bpfgate's DRA driver publishes the node's devices;
// a pod (hostUsers: false) with a claim on the demo DeviceClass is
// scheduled, its claim prepared to the CDI device, and it gets exactly
// demo's rights.
func TestDRA(t *testing.T) {
	e := setup(t)
	cp, err := StartControlPlane(t, filepath.Join(e.dir, "cp"))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	if _, err := cp.Kubectl("create", "namespace", KubeletNamespace); err != nil {
		t.Fatal(err)
	}
	k, err := StartKubelet(t, filepath.Join(e.dir, "kubelet-dra"), e.cd, cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range k.Stop() {
			t.Errorf("left by kubelet: %s", l)
		}
	}()

	root := filepath.Join(k.Dir, "root")
	cmd := exec.Command(e.bpfgate, "--config", e.config, "--json", "k8s", "dra", "--kubeconfig", cp.Kubeconfig,
		"--node", k.Node, "--devices", "2",
		"--registrar-dir", filepath.Join(root, "plugins_registry"), "--data-dir", filepath.Join(root, "plugins", "bpfgate.dev"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan map[string]any, 64)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Error("the DRA driver still ran 15 s after SIGTERM")
		}
	}()
	wait := func(action string) map[string]any {
		t.Helper()
		for {
			select {
			case ev := <-events:
				t.Logf("DRA driver: %v", ev)
				if ev["action"] == action {
					return ev
				}
			case err := <-exited:
				t.Fatalf("the DRA driver exited (%v) before %s", err, action)
			case <-time.After(60 * time.Second):
				desc, _ := cp.Kubectl("describe", "pod", "-n", KubeletNamespace)
				t.Fatalf("the DRA driver did not report %s in 60 s\npods:\n%s\nscheduler:\n%s\nkubelet:\n%s",
					action, desc, tail(filepath.Join(cp.Dir, "kube-scheduler.log")), k.LogTail())
			}
		}
	}
	wait("published")
	out, err := cp.Kubectl("get", "resourceslices", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var slices struct {
		Items []struct {
			Spec struct {
				Driver  string `json:"driver"`
				Node    string `json:"nodeName"`
				Devices []struct {
					Name string `json:"name"`
				} `json:"devices"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &slices); err != nil {
		t.Fatal(err)
	}
	if len(slices.Items) != 1 || slices.Items[0].Spec.Driver != "bpfgate.dev" || slices.Items[0].Spec.Node != k.Node ||
		len(slices.Items[0].Spec.Devices) != 2 {
		t.Fatalf("ResourceSlices: %s", out)
	}

	// The DeviceClasses of the node's policy, as a user applies them.
	classes, err := run(e.bpfgate, "--config", e.config, "k8s", "dra", "device-classes")
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Apply(classes); err != nil {
		t.Fatal(err)
	}
	if err := cp.Apply(fmt.Sprintf(draObjects, KubeletNamespace, testImage)); err != nil {
		t.Fatal(err)
	}
	ev := wait("prepared")
	if cdi, _ := ev["cdi_devices"].([]any); len(cdi) != 1 || cdi[0] != demoDevice {
		t.Errorf("prepared %v, want %s", ev, demoDevice)
	}
	out, err = k.Output("dra-demo", 90*time.Second)
	if err != nil {
		desc, _ := cp.Kubectl("describe", "pod", "-n", KubeletNamespace, "dra-demo")
		t.Fatalf("%v\n%s", err, desc)
	}
	expect(t, ebpfcheckReport(t, out), demoAllowed)
	// Deleting the pod lets kubelet unprepare the claim.
	if _, err := cp.Kubectl("delete", "pod", "-n", KubeletNamespace, "dra-demo", "--timeout=60s"); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		fmt.Println("kubelet's log:\n" + k.LogTail())
	}
}
