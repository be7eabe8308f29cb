package ocihook

import (
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits on what the hook reads. Each is far above what a runtime writes, so
// that only a broken or hostile input reaches it; it is named in the error.
const (
	// MaxStateSize bounds the OCI state on the hook's stdin: an id, a pid, a
	// bundle path and the annotations, usually well under 4 KiB.
	MaxStateSize = 1 << 20
	// MaxSpecSize bounds the bundle's config.json: podman writes 10 to
	// 30 KiB, a little more with an inline seccomp profile or many mounts.
	MaxSpecSize = 16 << 20
	// MaxSeccompSize bounds a seccomp base profile: containers-common's
	// is 16 KiB.
	MaxSeccompSize = 4 << 20
)

// maxPid is the kernel's PID_MAX_LIMIT: no pid is larger. A larger "pid"
// would be cut to 32 bits by pidfd_open and name some other process.
const maxPid = 1 << 22

// checkState refuses state values no runtime writes.
func checkState(st *specs.State) error {
	if st.Pid > maxPid {
		return fmt.Errorf("the OCI state of container %q has pid %d, larger than any pid (%d)", st.ID, st.Pid, maxPid)
	}
	if !filepath.IsAbs(st.Bundle) {
		return fmt.Errorf("the OCI state of container %q has bundle %q: the runtime must give an absolute path", st.ID, st.Bundle)
	}
	return nil
}
