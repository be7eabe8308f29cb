package launch_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// TestRecordBPFListener: with RecordBPF the host side gets the seccomp
// listener, and the workload holds none (it could answer its own calls),
// with and without --allow-unix-sockets.
func TestRecordBPFListener(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		record, unix bool
		filters      string
	}{{true, false, "2"}, {true, true, "1"}, {false, false, "1"}} {
		t.Run(fmt.Sprintf("record=%v,allow-unix=%v", tc.record, tc.unix), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			w, err := launch.Start(launch.Config{Args: []string{"/proc/self/exe"},
				Env:        append(os.Environ(), workloadEnv+"=fds"),
				Delegation: demoSet(t), RecordBPF: tc.record, AllowUnixSockets: tc.unix,
				Stdout: &stdout, Stderr: &stderr})
			if err != nil {
				t.Fatal(err)
			}
			l := w.BPFListener()
			if (l != nil) != tc.record {
				t.Fatalf("listener %v with RecordBPF %v", l, tc.record)
			}
			if w.BPFListener() != nil {
				t.Error("the listener was handed over twice")
			}
			if l != nil {
				target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", l.Fd()))
				if target != "anon_inode:seccomp notify" {
					t.Errorf("the listener is %q", target)
				}
				// Nobody answers: the workload makes no recorded call, and
				// a closed listener would fail them with ENOSYS.
				l.Close()
			}
			if code, err := w.Wait(); code != 0 || err != nil {
				t.Fatalf("code %d, %v: %s", code, err, stderr.String())
			}
			var res map[string]string
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("%q: %v", stdout.String(), err)
			}
			for k, v := range res {
				if strings.HasPrefix(k, "fd ") && strings.Contains(v, "seccomp") {
					t.Errorf("the workload holds the listener: %s -> %s", k, v)
				}
			}
			if res["Seccomp"] != "2" || res["Seccomp_filters"] != tc.filters {
				t.Errorf("seccomp state %q, %q filters; want %s filters", res["Seccomp"], res["Seccomp_filters"], tc.filters)
			}
		})
	}
}
