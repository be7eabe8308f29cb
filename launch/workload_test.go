package launch_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bpfgate/bpfgate/internal/ebpfcheck"
	"github.com/bpfgate/bpfgate/token"
)

// workloadEnv makes the test binary act as a workload instead of running
// tests; launch.Start executes it through /proc/self/exe.
const workloadEnv = "BPFGATE_TEST_WORKLOAD"

// runWorkload is what the test binary does as a workload. It reports on
// stdout as JSON and exits.
func runWorkload(kind string) int {
	var out any
	switch kind {
	case "cilium":
		out = ebpfcheck.Run()
	case "wait-cilium": // started outside bpfgate: wait for the mount first
		io.ReadFull(os.Stdin, make([]byte, 1))
		out = ebpfcheck.Run()
	case "token-from":
		t, err := token.Create(os.Getenv("BPFGATE_TEST_PATH"))
		res := map[string]string{"result": "ok"}
		if err != nil {
			res["result"] = ebpfcheck.Classify(err)
			res["error"] = err.Error()
		} else {
			t.Close()
		}
		out = res
	case "sandbox-net", "sandbox-cgroup", "sandbox-procs": // sandbox_workload_test.go
		out = map[string]func() any{"sandbox-net": netAttack, "sandbox-cgroup": cgroupAttack, "sandbox-procs": procsAttack}[kind]()
	case "pass-prog": // fdpass_test.go
		out = passProg()
	case "fds": // record_test.go: what the workload holds
		res := map[string]string{}
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			res["fd "+e.Name()] = target
		}
		status, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(k, "Seccomp") {
				res[k] = strings.TrimSpace(v)
			}
		}
		out = res
	case "identity":
		status, _ := os.ReadFile("/proc/self/status")
		uidMap, _ := os.ReadFile("/proc/self/uid_map")
		res := map[string]string{"uid_map": strings.Join(strings.Fields(string(uidMap)), " ")}
		for _, line := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "CapEff" || k == "CapBnd" || k == "Uid") {
				res[k] = strings.TrimSpace(v)
			}
		}
		out = res
	default:
		fmt.Fprintln(os.Stderr, "unknown workload", kind)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}
