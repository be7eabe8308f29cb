package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/profile"
)

// errAuditDir means the hook's audit directory is not one only root can
// write to, so a record there could be swapped or read by others.
var errAuditDir = errors.New("unsafe audit directory")

// The recorder's inherited descriptors, in exec.Cmd.ExtraFiles order.
const (
	recorderPidfd = 3 // the container's init process
	recorderOut   = 4 // the record file
	recorderReady = 5 // "ready\n" or "error: ...\n" to the hook
)

// recorderCmd is the hidden subcommand of oci-hook the hook starts.
const recorderCmd = "audit-recorder"

// hookAudit returns the ocihook.Options.Audit of the hook: it records the
// container's bpf() calls in dir (the --audit flag), or else in its
// profile's audit directory, if either is set.
func hookAudit(dir string, timeout time.Duration) func(*specs.State, profile.Profile) (string, func(), error) {
	return func(st *specs.State, p profile.Profile) (string, func(), error) {
		if dir == "" {
			dir = p.Audit
		}
		if dir == "" {
			return "", nil, nil
		}
		return startRecorder(dir, st, timeout)
	}
}

// startRecorder starts a recorder of the container's user namespace, in a
// session of its own, that writes dir/ID.jsonl and ends when the
// container's init process does. It returns once the tracer is attached,
// so that the container's first bpf() call is recorded, or fails (and
// leaves nothing running) within timeout.
func startRecorder(dir string, st *specs.State, timeout time.Duration) (_ string, _ func(), err error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	id := st.ID
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 200 {
		return "", nil, fmt.Errorf("audit: container id %q cannot name a file", id)
	}
	dirFD, err := openAuditDir(dir)
	if err != nil {
		return "", nil, err
	}
	defer unix.Close(dirFD)

	// The pidfd names the init process for good: its user namespace is read
	// after it is opened, and checked to belong to it still.
	pidfd, err := unix.PidfdOpen(st.Pid, 0)
	if err != nil {
		return "", nil, fmt.Errorf("audit: container init process %d: %w", st.Pid, err)
	}
	pidf := os.NewFile(uintptr(pidfd), "pidfd")
	defer pidf.Close()
	var ns unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(st.Pid)+"/ns/user", &ns); err != nil {
		return "", nil, fmt.Errorf("audit: container init process %d: %w", st.Pid, err)
	}
	if exited(pidfd) {
		return "", nil, fmt.Errorf("audit: container init process %d has exited", st.Pid)
	}
	if ns.Ino == audit.HostUserNS || ns.Ino > 0xffffffff {
		return "", nil, fmt.Errorf("audit: container init process %d runs in the host's user namespace", st.Pid)
	}

	name := id + ".jsonl"
	path := filepath.Join(dir, name)
	fd, err := unix.Openat(dirFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("audit: create %s: %w (a record is never overwritten: move it away to reuse the container id)", path, err)
	}
	out := os.NewFile(uintptr(fd), path)
	defer out.Close()
	removeOut := func() { _ = unix.Unlinkat(dirFD, name, 0) }

	r, w, err := os.Pipe()
	if err != nil {
		removeOut()
		return "", nil, err
	}
	defer r.Close()
	// The recorder must hold none of the container's mounts or descriptors,
	// nor the runtime's pipes to the hook (which the runtime waits for):
	// only these three, with /dev/null as stdio and / as its directory.
	cmd := exec.Command("/proc/self/exe", "oci-hook", recorderCmd, "--userns", strconv.FormatUint(ns.Ino, 10))
	cmd.Args[0] = "bpfgate" // as ps shows it
	cmd.ExtraFiles = []*os.File{pidf, out, w}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		removeOut()
		return "", nil, fmt.Errorf("audit: start the recorder: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		removeOut()
	}
	_ = r.SetReadDeadline(time.Now().Add(timeout))
	line, rerr := bufio.NewReader(r).ReadString('\n')
	if line != "ready\n" {
		stop()
		msg := strings.TrimSpace(strings.TrimPrefix(line, "error: "))
		switch {
		case msg != "":
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			msg = "no answer within " + timeout.String()
		case rerr != nil:
			msg = "it exited: " + rerr.Error()
		}
		return "", nil, fmt.Errorf("audit: the recorder did not attach (%s): the container is refused rather than run unaudited", msg)
	}
	// The recorder ends by itself with the container; the hook does not
	// wait for it (its parent reaps it once the hook has exited).
	return path, func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.Remove(path)
	}, nil
}

// openAuditDir opens dir if root owns it and nobody else can write to it.
func openAuditDir(dir string) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, fmt.Errorf("%w %q: want an absolute path", errAuditDir, dir)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if fi, lerr := os.Lstat(dir); err != nil && lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
		return -1, fmt.Errorf("%w %s: a symlink (give the real path)", errAuditDir, dir)
	}
	if err != nil {
		return -1, fmt.Errorf("%w %s: %w (create it: install -d -m 0700 -o root %s)", errAuditDir, dir, err, dir)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%w %s: %w", errAuditDir, dir, err)
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("%w %s: owner uid %d, mode %#o: want root's, writable by no one else (chown root %s; chmod go-w %s)",
			errAuditDir, dir, st.Uid, st.Mode&0o7777, dir, dir)
	}
	return fd, nil
}

// exited says whether the process behind pidfd has ended.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// newRecorderCmd is the process startRecorder starts, with the descriptors
// above: it records one user namespace until the pidfd's process ends.
func newRecorderCmd() *cobra.Command {
	var userns uint32
	cmd := &cobra.Command{
		Use:    recorderCmd + " --userns ID",
		Short:  "The OCI hook's recorder of one container (started by oci-hook --audit)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, fd := range []int{recorderPidfd, recorderOut, recorderReady} {
				if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || userns == 0 {
					return errors.New("this command is run by bpfgate oci-hook --audit only")
				}
				unix.CloseOnExec(fd)
			}
			ready := os.NewFile(recorderReady, "ready")
			out := os.NewFile(recorderOut, "audit file")
			tr, err := audit.Open(audit.Options{Filter: audit.Filter{UserNS: userns}})
			if err != nil {
				fmt.Fprintf(ready, "error: %v\n", err)
				return err
			}
			defer tr.Close()
			if _, err := ready.WriteString("ready\n"); err != nil {
				return err
			}
			ready.Close()

			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ctx, end := context.WithCancel(ctx)
			go func() {
				// The pidfd polls readable once the init process has exited.
				fds := []unix.PollFd{{Fd: recorderPidfd, Events: unix.POLLIN}}
				for {
					if _, err := unix.Poll(fds, -1); err != unix.EINTR {
						break
					}
				}
				end()
			}()
			defer out.Close()
			return recordAudit(ctx, tr, &auditWriter{out: out, json: true}, nil)
		},
	}
	cmd.Flags().Uint32Var(&userns, "userns", 0, "the container's user namespace inode")
	return cmd
}
