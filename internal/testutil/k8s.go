package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var k8sBuild struct {
	once sync.Once
	dir  string
	why  string
}

// K8sBin returns the path of a Kubernetes or container runtime binary
// ("containerd", "runc", "crictl", "cni/loopback", "kubelet", "etcd",
// "crio", ...) that scripts/k8s-build.sh builds at pinned versions and
// caches; it skips the test (fails it under CI=true) with the reason when
// there is no build or the binary is not in it.
func K8sBin(tb testing.TB, name string) string {
	tb.Helper()
	k8sBuild.once.Do(func() {
		script := filepath.Join(RepoRoot(tb), "scripts", "k8s-build.sh")
		out, err := exec.Command("bash", script, "--path").Output()
		if err != nil {
			k8sBuild.why = err.Error()
			if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
				k8sBuild.why = strings.TrimSpace(string(ee.Stderr))
			}
			return
		}
		k8sBuild.dir = filepath.Join(strings.TrimSpace(string(out)), "bin")
	})
	if k8sBuild.dir == "" {
		Skip(tb, "kubernetes binaries: "+k8sBuild.why)
	}
	path := filepath.Join(k8sBuild.dir, name)
	if _, err := os.Stat(path); err != nil {
		Skip(tb, "kubernetes binaries: "+name+" is not in the build ("+err.Error()+"): is scripts/k8s-build.sh newer than its cache?")
	}
	return path
}
