package audit_test

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/bpfgate/bpfgate/audit"
)

// Record the bpf() calls of one user namespace until SIGINT.
func Example() {
	// ls -L -i /proc/PID/ns/user gives a process's user namespace.
	tr, err := audit.Open(audit.Options{Filter: audit.Filter{UserNS: 4026532841}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	go func() {
		<-sigs
		tr.Close() // Read returns ErrClosed
	}()
	for {
		e, err := tr.Read()
		if errors.Is(err, audit.ErrClosed) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			break
		}
		fmt.Println(e.Pid, e.Comm, e.Cmd, e.MapType+e.ProgType, e.Outcome, e.Reason)
	}
	if n, err := tr.Dropped(); err == nil && n > 0 {
		fmt.Fprintln(os.Stderr, n, "events dropped")
	}
}
