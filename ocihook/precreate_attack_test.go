package ocihook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestPrecreateHostUserNSPath: a config that "joins" a user namespace by a
// path that is the host's (the hook's own) has no user namespace of its
// own. Precreate must not hand it the profile's capabilities, which would
// then hold in the host's user namespace, whether or not a hook that
// could refuse it later is in the config.
func TestPrecreateHostUserNSPath(t *testing.T) {
	opts := precreateOpts(t)
	// A hook that merely looks like bpfgate's: Precreate adds no real one.
	fake := `"hooks":{"createRuntime":[{"path":"/bin/true","args":["bpfgate","oci-hook"]}],`
	for _, path := range []string{"/proc/self/ns/user", "/proc/1/ns/user", "/proc/thread-self/ns/user"} {
		for _, hooks := range []string{`"hooks":{`, fake} {
			in := strings.Replace(config("demo", false, false), `{"type":"mount"}`, `{"type":"mount"},{"type":"user","path":"`+path+`"}`, 1)
			in = strings.Replace(in, `"hooks":{`, hooks, 1)
			out, res, err := Precreate(strings.NewReader(in), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(res.Refused, ErrNoUserNS) || len(res.Caps) > 0 {
				t.Errorf("%s, hooks %s: refused %v, caps %v: want ErrNoUserNS and no caps", path, hooks, res.Refused, res.Caps)
			}
			var before, after specs.Spec
			if err := json.Unmarshal([]byte(in), &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &after); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustMarshal(before.Process), mustMarshal(after.Process)) {
				t.Errorf("%s: the process changed: %+v", path, after.Process.Capabilities)
			}
		}
	}
}

// podUserNS is the path of a user namespace other than the test's, as a
// pod's infra container holds one: a process of the test's own sleeps in
// it until the test ends.
func podUserNS(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := cmd.Start(); err != nil {
		testutil.Skip(t, fmt.Sprintf("cannot make a user namespace: %v", err))
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

// TestPrecreateDeepJSON: a config nested deeper than encoding/json goes is
// an error, not a crash, and not a config passed on.
func TestPrecreateDeepJSON(t *testing.T) {
	opts := precreateOpts(t)
	for _, in := range []string{
		`{"annotations":{"io.bpfgate.profile":"demo"},"x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`,
		`{"annotations":{"io.bpfgate.profile":"demo"},"process":` + strings.Repeat(`{"a":`, 50000) + `1` + strings.Repeat("}", 50000) + `}`,
	} {
		if out, _, err := Precreate(strings.NewReader(in), opts); err == nil || out != nil {
			t.Errorf("%d bytes nested deep: %v, %d bytes out; want an error", len(in), err, len(out))
		}
	}
}
