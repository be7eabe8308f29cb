//go:build !k8s

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func init() {
	nonReporting["bpfgate k8s"] = true // hands over to bpfgate-k8s
}

// TestK8sHandsOver: this build has no Kubernetes components; `bpfgate k8s`
// says how to get them, and runs bpfgate-k8s (the -tags k8s build) from
// its own directory with the global flags passed on.
func TestK8sHandsOver(t *testing.T) {
	r := bpfgate(t, "k8s", "device-plugin")
	if r.code == 0 || !strings.Contains(r.stderr, "go build -tags k8s") {
		t.Fatalf("without bpfgate-k8s: %+v", r)
	}
	dir := t.TempDir()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, b := range []struct{ out, tags string }{{"bpfgate", ""}, {"bpfgate-k8s", "k8s"}} {
		if out, err := exec.Command(goTool, "build", "-tags", b.tags, "-o", filepath.Join(dir, b.out), ".").CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.out, err, out)
		}
	}
	lean, err := os.Stat(filepath.Join(dir, "bpfgate"))
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.Stat(filepath.Join(dir, "bpfgate-k8s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bpfgate %d bytes, bpfgate-k8s %d bytes", lean.Size(), full.Size())
	// --json before k8s must reach bpfgate-k8s: its refusal is JSON.
	out, err := exec.Command(filepath.Join(dir, "bpfgate"), "--json", "k8s", "device-plugin", "--devices", "0").Output()
	var e errorJSON
	if err == nil || json.Unmarshal(out, &e) != nil || !strings.Contains(e.Error, "--devices 0") {
		t.Fatalf("through bpfgate-k8s: %v, %q", err, out)
	}
	// A bpfgate-k8s others may write is not run.
	if err := os.Chmod(filepath.Join(dir, "bpfgate-k8s"), 0o777); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(filepath.Join(dir, "bpfgate"), "--json", "k8s", "device-plugin", "--devices", "0").Output()
	if err == nil || json.Unmarshal(out, &e) != nil || !strings.Contains(e.Error, "refusing to run it") {
		t.Fatalf("a world-writable bpfgate-k8s: %v, %q", err, out)
	}
}
