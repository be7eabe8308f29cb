package cdi_test

import (
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestNoCgo: generating a CDI spec needs neither the C helpers nor cgo, so
// a device plugin can build it with CGO_ENABLED=0.
func TestNoCgo(t *testing.T) {
	for _, d := range testutil.Deps(t, "github.com/bpfgate/bpfgate/cdi", true) {
		switch d {
		case "runtime/cgo", "github.com/bpfgate/bpfgate/launch/nsexec", "github.com/bpfgate/bpfgate/launch":
			t.Errorf("cdi imports %s", d)
		}
	}
}
