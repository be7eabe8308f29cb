package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/doctor"
)

// dropJSON is the line `audit --json` prints when the ring buffer lost
// events: how many since the start.
type dropJSON struct {
	Time    time.Time `json:"time"`
	Dropped uint64    `json:"dropped"`
}

func newAuditCmd(g *globals) *cobra.Command {
	var (
		output      string
		pid         int
		userns      string
		container   string
		runtimeRoot string
		ringSize    int
	)
	cmd := &cobra.Command{
		Use:   "audit [--json] [--output FILE] [--pid PID | --userns ID | --container ID]",
		Short: "Record the BPF calls of delegated workloads, host-wide",
		Long: `Record, until SIGINT or SIGTERM, every bpf() call made with a BPF token and
every call refused with EPERM in a user namespace other than the host's: who
made it (pid, command, host uid, user namespace, cgroup), the command and its
types, the token (its user namespace, the device of its bpffs, its
delegation), the result, and why a call was refused ("map type ringbuf not
delegated", "capability missing", "no token"). One line per call: a table, or
JSON with --json. Events the ring buffer had no room for are counted and
reported. --pid, --userns and --container keep one process, one user
namespace (its inode number, or a path such as /proc/PID/ns/user) or one
container (found as bpfgate doctor --container finds it). See docs/audit.md.`,
		Example: `  # Everything, as a table
  bpfgate audit

  # One container, as JSON lines, to a file
  bpfgate audit --json --container web --output web-bpf.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			set := 0
			for _, on := range []bool{pid != 0, userns != "", container != ""} {
				if on {
					set++
				}
			}
			if set > 1 {
				return errors.New("give at most one of --pid, --userns and --container")
			}
			var f audit.Filter
			switch {
			case pid < 0:
				return fmt.Errorf("--pid %d: want a process id", pid)
			case pid > 0:
				f.Pid = uint32(pid)
			case userns != "":
				ns, err := parseUserNS(userns)
				if err != nil {
					return err
				}
				f.UserNS = ns
			case container != "":
				c, err := doctor.FindContainer(context.Background(), container, doctor.ContainerOptions{RuntimeRoot: runtimeRoot})
				if err != nil {
					return err
				}
				ns, err := parseUserNS(fmt.Sprintf("/proc/%d/ns/user", c.Pid))
				if err != nil {
					return fmt.Errorf("container %s: %w", container, err)
				}
				if ns == audit.HostUserNS {
					return fmt.Errorf("container %s (pid %d) runs in the host's user namespace, so it holds no delegation to audit (use --pid %d to record its init process)", container, c.Pid, c.Pid)
				}
				f.UserNS = ns
			}
			out := io.Writer(os.Stdout)
			if output != "" && output != "-" {
				file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("--output: %w", err)
				}
				defer file.Close()
				out = file
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			tr, err := audit.Open(audit.Options{Filter: f, RingSize: ringSize})
			if err != nil {
				return err
			}
			defer tr.Close()
			w := &auditWriter{out: out, json: g.jsonOut(), pretty: g.pretty}
			if !w.json {
				w.header()
			}
			fmt.Fprintf(os.Stderr, "bpfgate: audit: recording bpf() calls through %s (%s); SIGINT or SIGTERM ends it\n",
				strings.Join(tr.ABIs(), ", "), tr.Hook())
			if unseen := unseenABIs(tr); len(unseen) > 0 {
				fmt.Fprintf(os.Stderr, "bpfgate: audit: warning: this kernel also takes %s system calls, which the %s does not see: bpf() calls through them are not recorded\n",
					strings.Join(unseen, " and "), tr.Hook())
			}
			err = recordAudit(ctx, tr, w, nil)
			fmt.Fprintf(os.Stderr, "bpfgate: audit: %d events recorded, %d dropped\n", w.events, w.dropped)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&output, "output", "o", "", "write the events to FILE (created mode 0600, truncated) instead of stdout")
	fl.IntVar(&pid, "pid", 0, "record this process only (its thread group id, as ps shows it)")
	fl.StringVar(&userns, "userns", "", "record this user namespace only: its inode number, or a path such as /proc/PID/ns/user")
	fl.StringVar(&container, "container", "", "record this container only (podman, or runc/crun state), by its user namespace")
	fl.StringVar(&runtimeRoot, "runtime-root", "", "runc's or crun's --root, to find --container there")
	fl.IntVar(&ringSize, "ring-size", 0, "ring buffer size in bytes, a power of two (default 2 MiB, about 7000 events)")
	return cmd
}

// unseenABIs lists the system call ABIs the kernel takes whose bpf() calls
// the tracer does not record.
func unseenABIs(tr *audit.Tracer) []string {
	var unseen []string
	for _, abi := range audit.ABIs() {
		if !slices.Contains(tr.ABIs(), abi) {
			unseen = append(unseen, abi)
		}
	}
	return unseen
}

// parseUserNS takes a user namespace inode number or a path to one.
func parseUserNS(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n != 0 {
		return uint32(n), nil
	}
	if !strings.Contains(s, "/") {
		return 0, fmt.Errorf("--userns %q: want the inode number of a user namespace (ls -L -i /proc/PID/ns/user) or such a path", s)
	}
	var st unix.Stat_t
	if err := unix.Stat(s, &st); err != nil {
		return 0, fmt.Errorf("user namespace %s: %w", s, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(s, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("%s is not a namespace file (such as /proc/PID/ns/user)", s)
	}
	return uint32(st.Ino), nil
}

// auditWriter prints events and drop counts as a table or JSON lines.
type auditWriter struct {
	mu           sync.Mutex
	out          io.Writer
	json, pretty bool
	events       int
	dropped      uint64
	err          error // the first write error
}

func (w *auditWriter) header() {
	fmt.Fprintf(w.out, "%-12s %7s %-15s %10s %-10s %-34s %-8s %-11s %s\n",
		"TIME", "PID", "COMM", "USERNS", "CMD", "TYPE", "TOKEN", "RESULT", "REASON")
}

func (w *auditWriter) event(e *audit.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	if w.json {
		return w.keep(writeJSON(w.out, e, w.pretty))
	}
	typ := e.MapType + e.ProgType
	if e.ProgType != "" && e.AttachType != "" {
		typ += "/" + e.AttachType
	}
	tok := "-"
	if e.Token != nil {
		tok = e.Token.BPFFSDev
	} else if e.TokenFD >= 0 {
		tok = "fd " + strconv.Itoa(int(e.TokenFD))
	}
	res := e.Errno
	switch {
	case e.MapID != 0:
		res = "map " + strconv.FormatUint(uint64(e.MapID), 10)
	case e.ProgID != 0:
		res = "prog " + strconv.FormatUint(uint64(e.ProgID), 10)
	case e.Ret >= 0:
		res = "ok"
	}
	cmd := e.Cmd
	if e.ABI != "" {
		cmd += " (" + e.ABI + ")"
	}
	line := fmt.Sprintf("%-12s %7d %-15s %10d %-10s %-34s %-8s %-11s %s",
		e.Time.Format("15:04:05.000"), e.Pid, e.Comm, e.UserNS, cmd, orDash(typ), tok, res, e.Reason)
	_, err := io.WriteString(w.out, strings.TrimRight(line, " ")+"\n")
	return w.keep(err)
}

// drops reports the drop counter when it has grown.
func (w *auditWriter) drops(n uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n <= w.dropped {
		return nil
	}
	lost := n - w.dropped
	w.dropped = n
	if w.json {
		return w.keep(writeJSON(w.out, dropJSON{Time: time.Now(), Dropped: n}, w.pretty))
	}
	_, err := fmt.Fprintf(w.out, "--- %d events dropped (ring buffer full), %d in all\n", lost, n)
	return w.keep(err)
}

func (w *auditWriter) keep(err error) error {
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// recordAudit writes the tracer's events (those keep accepts, all if nil) until
// ctx ends, then everything recorded until then, and the drop count.
func recordAudit(ctx context.Context, tr *audit.Tracer, w *auditWriter, keep func(*audit.Event) bool) error {
	done := make(chan error, 1)
	go func() {
		for {
			e, err := tr.Read()
			if errors.Is(err, audit.ErrFlushed) || errors.Is(err, audit.ErrClosed) {
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
			if keep == nil || keep(e) {
				if err := w.event(e); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			// Read what was recorded until now, then stop.
			if err = tr.Flush(); err == nil {
				err = <-done
			}
			break loop
		case err = <-done:
			break loop
		case <-tick.C:
			if n, derr := tr.Dropped(); derr == nil {
				w.drops(n)
			}
		}
	}
	if n, derr := tr.Dropped(); derr == nil {
		w.drops(n)
	}
	if err == nil {
		err = w.err
	}
	return err
}
