package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

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

	ctx, end := context.WithCancel(context.Background())
	defer end()
	aw := &auditWriter{out: file, json: true}
	var recorded chan error // made once the workload has started
	code, err := launch.RunStarted(cfg, func(w *launch.Workload) {
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
		// Narrow the kernel's filter to the workload's user namespace, if
		// it is still running to be asked.
		if ns, ok := workloadUserNS(w.Cgroup()); ok {
			tr.SetFilter(audit.Filter{UserNS: ns})
		}
		recorded = make(chan error, 1)
		go func() { recorded <- recordAudit(ctx, tr, aw, ours) }()
	})
	if recorded == nil {
		return code, err
	}
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
