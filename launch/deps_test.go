package launch_test

import (
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestLibraryNeedsNoCLI: a program that runs workloads with this package
// pulls in neither cobra nor a YAML parser (the quick start in the README).
func TestLibraryNeedsNoCLI(t *testing.T) {
	for _, d := range testutil.Deps(t, "github.com/bpfgate/bpfgate/launch", true) {
		if l := strings.ToLower(d); strings.Contains(l, "yaml") || strings.Contains(l, "cobra") || strings.Contains(l, "pflag") {
			t.Errorf("launch imports %s", d)
		}
	}
}
