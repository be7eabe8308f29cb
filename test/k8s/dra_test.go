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

	"github.com/bpfgate/bpfgate/k8s/dra"
	"github.com/bpfgate/bpfgate/k8s/nri"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

// draObjects are a claim on demo's DeviceClass (which bpfgate k8s dra
// device-classes makes), which the pods of draPod share.
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
`

// draPod is a pod with the claim bpf-demo: its name,
// namespace, image, hostUsers, the capabilities added, and annotations.
const draPod = `apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, annotations: {%s}}
spec:
  hostUsers: %t
  automountServiceAccountToken: false
  restartPolicy: Never
  # No controller manager removes the not-ready taint kubelet registers with.
  tolerations: [{operator: Exists}]
  resourceClaims:
  - {name: bpf, resourceClaimName: bpf-demo}
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: [/bin/sh, -c, "cat /proc/self/uid_map; exec /bin/ebpfcheck"]
    securityContext:
      capabilities: {add: [%s]}
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
		len(slices.Items[0].Spec.Devices) != 4 { // demo's and scoped's
		t.Fatalf("ResourceSlices: %s", out)
	}

	// The DeviceClasses of the node's policy, as a user applies them.
	classes, err := run(e.bpfgate, "--config", e.config, "k8s", "dra", "device-classes")
	if err != nil {
		t.Fatal(err)
	}
	// The DeviceClasses now; the namespace policy of scoped (limited to
	// monitoring) once the driver's own refusal has been seen.
	var classDocs, policyDocs []string
	for _, doc := range strings.Split(classes, "\n---\n") {
		if strings.Contains(doc, "\nkind: DeviceClass\n") {
			classDocs = append(classDocs, doc)
		} else {
			policyDocs = append(policyDocs, doc)
		}
	}
	if len(classDocs) != 2 || len(policyDocs) != 2 || !strings.Contains(policyDocs[0], "name: "+dra.NamespacePolicyName("scoped")) {
		t.Fatalf("device-classes printed %d classes and %d other documents, want 2 and scoped's policy and binding:\n%s", len(classDocs), len(policyDocs), classes)
	}
	if err := cp.Apply(strings.Join(classDocs, "\n---\n")); err != nil {
		t.Fatal(err)
	}
	if err := cp.Apply(fmt.Sprintf(draObjects, KubeletNamespace) + "---\n" +
		fmt.Sprintf(draPod, "dra-demo", KubeletNamespace, "", false, testImage, "BPF")); err != nil {
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

	// A claim on a profile limited to other namespaces (scoped: only
	// monitoring) is refused when kubelet asks the driver to prepare it:
	// the pod never starts, and its events say why.
	scopedClaim := strings.ReplaceAll(strings.ReplaceAll(fmt.Sprintf(draObjects, KubeletNamespace), "bpf-demo", "bpf-scoped"), "bpfgate-demo", "bpfgate-scoped")
	scopedPod := strings.ReplaceAll(fmt.Sprintf(draPod, "dra-scoped", KubeletNamespace, "", false, testImage, "BPF"), "bpf-demo", "bpf-scoped")
	if err := cp.Apply(scopedClaim + "---\n" + scopedPod); err != nil {
		t.Fatal(err)
	}
	refusal := fmt.Sprintf("claim %s/bpf-scoped: %s: profile scoped is for claims of the namespaces monitoring only", KubeletNamespace, dra.ErrNamespace)
	if ev := wait("error"); !strings.Contains(fmt.Sprint(ev["error"]), refusal) {
		t.Errorf("the driver's error %v does not say %q", ev, refusal)
	}
	if msg, err := podEvent(cp, "dra-scoped", refusal, 60*time.Second); err != nil {
		t.Errorf("%v\nkubelet's lines about it:\n%s", err, k.LogLines("dra-scoped"))
	} else {
		t.Logf("kubectl get events: %s", msg)
	}
	if _, err := cp.Kubectl("delete", "pod", "-n", KubeletNamespace, "dra-scoped", "--timeout=60s"); err != nil {
		t.Error(err)
	}

	// With scoped's namespace policy, such a claim is refused when it is
	// created, before the scheduler gives it a device; in monitoring it is
	// admitted. (The API server takes a moment to enforce a new policy.)
	if err := cp.Apply(strings.Join(policyDocs, "\n---\n")); err != nil {
		t.Fatal(err)
	}
	another := strings.ReplaceAll(scopedClaim, "{name: bpf-scoped,", "{name: bpf-scoped-2,")
	admission := "bpfgate: the DeviceClass bpfgate-scoped (profile scoped) is for the namespaces monitoring only"
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := cp.Apply(another)
		if err != nil && strings.Contains(err.Error(), admission) {
			t.Logf("kubectl apply: %v", err)
			break
		}
		if err == nil {
			cp.Kubectl("delete", "resourceclaim", "-n", KubeletNamespace, "bpf-scoped-2")
		}
		if time.Now().After(deadline) {
			t.Fatalf("a claim on bpfgate-scoped in %s: %v, want the API server to refuse it saying %q", KubeletNamespace, err, admission)
		}
		time.Sleep(time.Second)
	}
	if _, err := cp.Kubectl("create", "namespace", "monitoring"); err != nil {
		t.Fatal(err)
	}
	inMonitoring := strings.ReplaceAll(strings.ReplaceAll(fmt.Sprintf(draObjects, "monitoring"), "bpf-demo", "bpf-scoped"), "bpfgate-demo", "bpfgate-scoped")
	if err := cp.Apply(inMonitoring); err != nil {
		t.Errorf("a claim on bpfgate-scoped in monitoring: %v", err)
	}

	// Refusals reach the pod's status (kubectl get pod, describe) word
	// for word, in the terms of a pod spec: the CDI device's hook refuses
	// at start, the NRI plugin at create.
	for _, tc := range []struct {
		name, annots string
		hostUsers    bool
		caps         string
		nri          bool
		want         string
	}{
		{"no user namespace", "", true, "BPF", false,
			fmt.Sprintf("%s: %s", ocihook.ErrNoUserNS, ocihook.Kubernetes.UserNSFix())},
		{"no CAP_BPF", "", false, "", false,
			fmt.Sprintf("%s: CAP_BPF (%s)", ocihook.ErrMissingCaps, ocihook.Kubernetes.CapsFix([]string{"CAP_BPF"}))},
		{"profile not allowed", fmt.Sprintf("%q: gone", nri.ProfileAnnotation), false, "BPF", true,
			fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone")},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			if tc.nri {
				e.startNRI(t)
			}
			name := "dra-" + strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), "_", "-")
			name = strings.ToLower(name)
			if err := cp.Apply(fmt.Sprintf(draPod, name, KubeletNamespace, tc.annots, tc.hostUsers, testImage, tc.caps)); err != nil {
				t.Fatal(err)
			}
			defer cp.Kubectl("delete", "pod", "-n", KubeletNamespace, name, "--timeout=60s")
			reason, msg, err := podRefusal(cp, name, 90*time.Second)
			if err != nil {
				desc, _ := cp.Kubectl("describe", "pod", "-n", KubeletNamespace, name)
				t.Fatalf("%v\n%s\nkubelet's lines about it:\n%s", err, desc, k.LogLines(name))
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("the pod's status (%s) does not say %q:\n%s", reason, tc.want, msg)
			}
			t.Logf("kubectl get pod %s: %s: %s", name, reason, msg)
		})
	}
	if t.Failed() {
		fmt.Println("kubelet's log:\n" + k.LogTail())
	}
}

// podEvent waits for an event of the pod whose message says want, and
// returns that message.
func podEvent(cp *ControlPlane, pod, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := cp.Kubectl("get", "events", "-n", KubeletNamespace, "--field-selector", "involvedObject.name="+pod, "-o", "json")
		if err != nil {
			return "", err
		}
		var evs struct {
			Items []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &evs); err != nil {
			return "", fmt.Errorf("kubectl get events: %w", err)
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, want) {
				return e.Reason + ": " + e.Message, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no event of pod %s says %q in %v: %s", pod, want, timeout, out)
		}
		time.Sleep(time.Second)
	}
}

// podRefusal waits for the container "c" of a pod to have failed to
// create or start, and returns the reason and message of its status, as
// kubectl get pod and describe show them.
func podRefusal(cp *ControlPlane, pod string, timeout time.Duration) (reason, message string, err error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := cp.Kubectl("get", "pod", "-n", KubeletNamespace, pod, "-o", "json")
		if err != nil {
			return "", "", err
		}
		var p struct {
			Status struct {
				Containers []struct {
					State map[string]struct {
						Reason  string `json:"reason"`
						Message string `json:"message"`
					} `json:"state"`
				} `json:"containerStatuses"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			return "", "", fmt.Errorf("kubectl get pod %s: %w", pod, err)
		}
		for _, c := range p.Status.Containers {
			for state, s := range c.State {
				switch {
				case state == "running", state == "terminated" && s.Reason == "Completed":
					return "", "", fmt.Errorf("pod %s: the container ran (%s)", pod, state)
				case s.Message != "":
					return s.Reason, s.Message, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("pod %s: no container failed in %v", pod, timeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
