//go:build !cgo

package launch_test

import (
	"errors"
	"os"
	"testing"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/launch"
)

// TestWithoutCgo: a build without the C helpers says so instead of running
// a workload without its sandbox.
func TestWithoutCgo(t *testing.T) {
	if _, err := launch.Start(launch.Config{Args: []string{"true"}}); !errors.Is(err, launch.ErrNoHelper) {
		t.Errorf("Start: got %v, want ErrNoHelper", err)
	}
	if err := launch.MountInto(os.Getpid(), "/", bpffs.Options{}); !errors.Is(err, launch.ErrNoHelper) {
		t.Errorf("MountInto: got %v, want ErrNoHelper", err)
	}
}
