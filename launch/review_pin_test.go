package launch_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"

	"github.com/cilium/ebpf"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// pinOut loads an XDP program with its token and pins it, readable by
// everyone, into the host bpffs whose path is in its environment.
func pinOut() map[string]string {
	res := map[string]string{}
	prog, _, err := loadProg(ebpf.XDP, ebpf.AttachXDP, 2)
	if err != nil {
		res["load"] = err.Error()
		return res
	}
	defer prog.Close()
	res["load"] = "ok"
	pin := filepath.Join(os.Getenv("BPFGATE_REVIEW_BPFFS"), "escaped")
	err = prog.Pin(pin)
	res["pin"] = outcome(err)
	if err == nil {
		res["chmod"] = outcome(os.Chmod(pin, 0o666))
	}
	return res
}

// TestReviewPinIntoHostBPFFS: the sandbox's root shows every host mount
// outside /proc and /sys, and a bpffs mounted without mode= (as
// `bpfgate mount /run/bpf`, the CLI's own example, does) has a root of mode
// 1777. The workload pins its XDP program there; after the sandbox is gone
// an unprivileged local user opens the pin and attaches the program to a
// host interface. No unix socket is needed, and the program outlives the
// sandbox.
func TestReviewPinIntoHostBPFFS(t *testing.T) {
	testutil.RequireRoot(t)
	ifname, _ := hostVeth(t)
	hostFS := testutil.MountBPFFS(t) // under the host's /tmp, default mode
	set := demoSet(t)
	var stdout, stderr bytes.Buffer
	cfg := launch.Config{Delegation: set, Caps: delegate.CapsFor(names(t), set)}
	cfg.Args = []string{"/proc/self/exe", "-test.run=^TestReviewPoCWorkload$"}
	cfg.Env = append(os.Environ(), reviewPoCEnv+"=pin-out", "BPFGATE_REVIEW_BPFFS="+hostFS)
	cfg.Stdout, cfg.Stderr = &stdout, &stderr
	code, err := launch.Run(cfg)
	if err != nil || code != 0 {
		t.Fatalf("workload: code %d, %v\nstderr: %s", code, err, stderr.String())
	}
	var res map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("workload: %v\nstdout: %s", err, stdout.String())
	}
	// The sandbox has ended. The accomplice: an unprivileged local user.
	got := accomplice(ifname, func() (*ebpf.Program, error) {
		prog, err := ebpf.LoadPinnedProgram(filepath.Join(hostFS, "escaped"), nil)
		if err != nil {
			return nil, fmt.Errorf("open pin: %w", err)
		}
		return prog, nil
	})
	verdict := <-got
	t.Logf("workload %v; accomplice after the sandbox ended: %s", res, verdict)
	if res["pin"] == "ok" || verdict == "attached" {
		t.Errorf("the workload pinned its XDP program into a host bpffs (%s) and an unprivileged user attached it to host interface %s: %s", hostFS, ifname, verdict)
	}
}
