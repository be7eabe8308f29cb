package launch

import (
	"fmt"
	"os"

	"github.com/bpfgate/bpfgate/launch/nsexec"
)

// Init must be called first thing in main (or TestMain) of every program
// that uses this package: Start and MountInto re-execute the program as
// their helper. The helpers themselves run in a C constructor before the
// Go runtime starts (package launch/nsexec), so a helper never reaches
// Init; if one does, the binary lacks the constructor (built without cgo)
// or was started with a helper's environment by mistake, and Init exits.
func Init() {
	mode, ok := os.LookupEnv(nsexec.EnvMode)
	if !ok {
		return
	}
	if !nsexec.Available {
		fmt.Fprintln(os.Stderr, "bpfgate:", ErrNoHelper)
	} else {
		fmt.Fprintf(os.Stderr, "bpfgate: unknown helper mode %q\n", mode)
	}
	os.Exit(nsexec.ExitSetup)
}
