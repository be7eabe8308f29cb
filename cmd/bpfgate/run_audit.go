package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

// auditForwarded are the signals runAudited passes on to the workload, as
// launch.Run does.
var auditForwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT}

// runAudited runs the workload as launch.Run does, recording its bpf()
// calls to path as JSON lines. The tracer is attached before the workload
// starts and drained after it has ended, so that no call is lost at either
// end. Until the workload's user namespace is known, the kernel records
// every delegated call; the events are kept by the workload's host uids,
// which no other workload holds (bpfgate's id pool).
func runAudited(cfg launch.Config, path string) (int, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nsexec.ExitSetup, fmt.Errorf("--audit: %w", err)
	}
	defer file.Close()
	tr, err := audit.Open(audit.Options{})
	if err != nil {
		return nsexec.ExitSetup, fmt.Errorf("--audit: %w", err)
	}
	defer tr.Close()

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, auditForwarded...)
	defer signal.Stop(sigs)
	w, err := launch.Start(cfg)
	var ee *launch.ExecError
	if errors.As(err, &ee) {
		return ee.Code, err
	}
	if err != nil {
		return nsexec.ExitSetup, err
	}
	uids := w.UIDMap()
	ours := func(e *audit.Event) bool {
		if e.UserNS == audit.HostUserNS {
			return false
		}
		for _, m := range uids {
			if int64(e.UID) >= int64(m.HostID) && int64(e.UID) < int64(m.HostID)+int64(m.Size) {
				return true
			}
		}
		return false
	}
	// Narrow the kernel's filter to the workload's user namespace, if it
	// is still running to be asked.
	if ns, ok := workloadUserNS(w.Cgroup()); ok {
		tr.SetFilter(audit.Filter{UserNS: ns})
	}
	ctx, end := context.WithCancel(context.Background())
	aw := &auditWriter{out: file, json: true}
	recorded := make(chan error, 1)
	go func() { recorded <- recordAudit(ctx, tr, aw, ours) }()

	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = w.Signal(s)
			case <-done:
				return
			}
		}
	}()
	code, err := w.Wait()
	close(done)
	end()
	if rerr := <-recorded; rerr != nil && err == nil {
		err = fmt.Errorf("--audit %s: %w", path, rerr)
	}
	if aw.dropped > 0 {
		fmt.Fprintf(os.Stderr, "bpfgate: run: --audit %s: %d events dropped (ring buffer full)\n", path, aw.dropped)
	}
	return code, err
}

// workloadUserNS returns the user namespace of a process in the
// workload's cgroup.
func workloadUserNS(cgroup string) (uint32, bool) {
	procs, err := os.ReadFile(cgroup + "/cgroup.procs")
	if err != nil {
		return 0, false
	}
	for _, f := range strings.Fields(string(procs)) {
		if _, err := strconv.Atoi(f); err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+f+"/ns/user", &st) == nil && st.Ino != audit.HostUserNS {
			return uint32(st.Ino), true
		}
	}
	return 0, false
}
