//go:build k8s

package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The device plugin is a daemon: under --json it prints one line per
// event (TestK8sDevicePlugin), not one document.
func init() {
	nonReporting["bpfgate k8s device-plugin"] = true
	nonReporting["bpfgate k8s dra"] = true
	k8sReporting = append(k8sReporting, reportingCmd{[]string{"k8s", "dra", "device-classes"}, false})
}

// TestK8sDRADeviceClasses: the classes of the config file's profiles, as
// YAML documents kubectl reads or one List under --json; a profile the
// driver would refuse is refused.
func TestK8sDRADeviceClasses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", "profiles:\n  demo:\n    cmds: [map_create]\n    maps: [hash]\n  net-2:\n    cmds: [map_create]\n    maps: [array]\n")
	bad := write("bad.yaml", "profiles:\n  demo:\n    cmds: [map_create]\n    maps: [hash]\n  My_Tool:\n    cmds: [map_create]\n    maps: [hash]\n")

	r := bpfgate(t, "--config", good, "k8s", "dra", "device-classes")
	docs := strings.Split(r.stdout, "\n---\n")
	if r.code != 0 || len(docs) != 2 || !strings.Contains(docs[0], "name: bpfgate-demo\n") || !strings.Contains(docs[1], "name: bpfgate-net-2\n") ||
		!strings.Contains(docs[1], `device.attributes["bpfgate.dev"].profile`) || !strings.HasPrefix(docs[0], "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\n") {
		t.Fatalf("%+v, want two DeviceClass documents, bpfgate-demo and bpfgate-net-2", r)
	}

	r = bpfgate(t, "--json", "--config", good, "k8s", "dra", "device-classes")
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || list.Kind != "List" || len(list.Items) != 2 ||
		list.Items[1].Kind != "DeviceClass" || list.Items[1].Metadata.Name != "bpfgate-net-2" {
		t.Fatalf("%+v, want a List of two DeviceClasses", r)
	}

	r = bpfgate(t, "--json", "--config", bad, "k8s", "dra", "device-classes")
	var e errorJSON
	if r.code == 0 || json.Unmarshal([]byte(r.stdout), &e) != nil || !strings.Contains(e.Error, `profile "My_Tool" does not make a device or DeviceClass name`) {
		t.Fatalf("%+v, want a JSON error naming My_Tool", r)
	}
}

// TestK8sDevicePluginProfiles: profiles limited to some Kubernetes
// namespaces are left out, and said so.
func TestK8sDevicePluginProfiles(t *testing.T) {
	got, err := devicePluginProfiles([]string{"demo", "mon", "net"}, map[string][]string{"mon": {"monitoring"}})
	if err != nil || !slices.Equal(got, []string{"demo", "net"}) {
		t.Errorf("got %v, %v; want demo and net", got, err)
	}
	if got, err := devicePluginProfiles([]string{"mon"}, map[string][]string{"mon": {"monitoring"}}); err == nil || got != nil {
		t.Errorf("only limited profiles: %v, %v; want an error", got, err)
	}
}

func TestK8sDevicePluginRefusals(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("profiles: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scoped := filepath.Join(dir, "scoped.yaml")
	if err := os.WriteFile(scoped, []byte("profiles:\n  mon:\n    maps: hash\n    k8s_namespaces: [monitoring]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no devices", []string{"k8s", "device-plugin", "--kubelet-dir", dir, "--devices", "0"}, "--devices 0: give 1 to"},
		{"empty policy", []string{"--config", empty, "k8s", "device-plugin", "--kubelet-dir", dir}, "the host policy allows none"},
		// kubelet does not tell a device plugin whose pod it serves.
		{"only namespace-limited profiles", []string{"--config", scoped, "k8s", "device-plugin", "--kubelet-dir", dir},
			"every allowed profile is limited to some namespaces (k8s_namespaces), which a device plugin cannot enforce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bpfgate(t, append([]string{"--json"}, tc.args...)...)
			var e errorJSON
			if r.code == 0 || json.Unmarshal([]byte(r.stdout), &e) != nil || !strings.Contains(e.Error, tc.want) {
				t.Fatalf("%+v, want a JSON error saying %q", r, tc.want)
			}
		})
	}
}

// TestK8sDevicePlugin: the command serves the built-in profiles (no
// config file) and reports under --json, one line per event.
func TestK8sDevicePlugin(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--json", "--config", filepath.Join(dir, "none.yaml"), "k8s", "device-plugin", "--kubelet-dir", dir, "--devices", "2")
	// --config given explicitly must exist: the error says so.
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	out, _ := cmd.Output()
	if !strings.Contains(string(out), `"error"`) {
		t.Fatalf("a missing --config file: %q, want an error", out)
	}

	cmd = exec.Command(exe, "--json", "k8s", "device-plugin", "--kubelet-dir", dir, "--devices", "2")
	cmd.Env = append(os.Environ(), asBPFGate+"=1", configEnv+"=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// No kubelet: it listens only once kubelet's socket is there.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(500 * time.Millisecond)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("listening before kubelet runs: %v", entries)
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	var events []map[string]any
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Errorf("not a JSON line: %q", sc.Text())
		}
		events = append(events, e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit on SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGINT")
	}
	if len(events) != 1 || events[0]["action"] != "stopped" {
		t.Errorf("events %v, want one: stopped", events)
	}
}
