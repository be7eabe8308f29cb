package delegate_test

import (
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestNoYAML: delegate is the kernel's rules only; reading config files is
// package profile's business, so programs that only delegate pull in no
// YAML parser.
func TestNoYAML(t *testing.T) {
	for _, d := range testutil.Deps(t, "github.com/bpfgate/bpfgate/delegate", true) {
		if strings.Contains(strings.ToLower(d), "yaml") {
			t.Errorf("delegate imports %s", d)
		}
	}
}
