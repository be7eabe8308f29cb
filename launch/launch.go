package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/cgroup"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/idpool"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

var (
	// ErrHostRoot means an id map would map host root into the workload.
	ErrHostRoot = errors.New("the id map includes host id 0: bpfgate never runs a workload as host root")
	// ErrNotRoot means the caller cannot set delegate_* options.
	ErrNotRoot = errors.New("delegating BPF needs root (CAP_SYS_ADMIN in the initial user namespace)")
)

// Config describes a workload.
type Config struct {
	Args []string // the command and its arguments
	Env  []string // nil means the caller's environment
	Dir  string

	Delegation delegate.Set
	// Owner owns the bpffs's root and sets its mode, as ids inside the
	// workload's user namespace (its root, mode 1777, if nil).
	Owner bpffs.Owner
	// Path is where the bpffs is mounted inside; delegate.DefaultPath if empty.
	Path string
	// UIDMap and GIDMap map the workload's ids to host ids. If UIDMap is
	// nil, the workload gets a block of host ids of its own from IDPool
	// (idpool.Default() if nil), for as long as it runs; GIDMap defaults to
	// UIDMap.
	UIDMap, GIDMap []syscall.SysProcIDMap
	IDPool         *idpool.Pool
	// Caps are the capabilities the workload keeps inside its user
	// namespace; it has none in the host's. CAP_BPF if empty; delegate.CapsFor
	// gives what a delegation needs.
	Caps []delegate.Cap

	// Net is the workload's network: NetNone (the default) gives it a
	// network namespace of its own with only lo; NetHost shares the
	// host's, so that XDP, tc and socket programs reach host interfaces.
	Net NetMode
	// Timeout bounds each wait of the start (bpffs.HandshakeTimeout if 0).
	Timeout time.Duration

	// ExtraFiles are passed on to the workload as fds 3, 4, ... (as in
	// os/exec); every other fd but 0, 1 and 2 is closed.
	ExtraFiles []*os.File
	// AllowUnixSockets lets the workload make unix sockets (socketpair's
	// are always allowed). Off by default: files are shared with the host,
	// so a unix socket reaches outside the sandbox, and BPF objects passed
	// through it can be attached there by anyone (the kernel checks the
	// token when an object is made, not when it is attached).
	AllowUnixSockets bool
	// RecordBPF makes the workload's bpf(2) calls that create objects or
	// take a token (map, program and BTF loads, link creation, program
	// attachment, token creation) wait for a seccomp user notification;
	// Workload.BPFListener hands the listener to the caller, who must
	// answer every notification (package record does). The workload never
	// holds the listener. Other system calls are not slowed.
	RecordBPF bool
	// AllowSystemIDs permits UIDMap and GIDMap to map host ids of system
	// users and groups (below 1000, or listed in /etc/passwd or /etc/group).
	AllowSystemIDs bool

	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// NetMode says which network namespace a workload runs in.
type NetMode int

const (
	// NetNone gives the workload a network namespace of its own, with lo up.
	NetNone NetMode = iota
	// NetHost shares the host's network namespace.
	NetHost
)

// Workload is a running sandbox.
type Workload struct {
	cmd    *exec.Cmd // the supervisor
	life   *os.File  // its life line: closing it ends the sandbox
	parent *os.File  // the cgroup parent directory (O_PATH)
	cgname string    // the workload's cgroup, made by the supervisor in parent
	lease  *idpool.Lease
	uidMap []syscall.SysProcIDMap
	// listener is the seccomp listener of a workload started with
	// RecordBPF, until BPFListener hands it over.
	listener *os.File
}

// CgroupParent is the cgroup, below the cgroup2 root, that holds one cgroup
// per running workload.
const CgroupParent = "bpfgate"

// ExecError means the workload's command could not be executed; Code is
// the exit status a shell gives for it (126, or 127 when not found).
type ExecError struct {
	Code int
	Err  error
}

func (e *ExecError) Error() string { return e.Err.Error() }
func (e *ExecError) Unwrap() error { return e.Err }

// ParseIDMap parses "inside:host:count" entries, comma separated.
func ParseIDMap(s string) ([]syscall.SysProcIDMap, error) {
	var out []syscall.SysProcIDMap
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(strings.TrimSpace(part), ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("id map %q: want inside:host:count, e.g. 0:100000:65536", part)
		}
		var v [3]int
		for i, x := range f {
			n, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id map %q: %q is not a number", part, x)
			}
			v[i] = int(n)
		}
		if v[2] == 0 {
			return nil, fmt.Errorf("id map %q: count must be at least 1", part)
		}
		if uint64(v[0])+uint64(v[2]) > 1<<32-1 || uint64(v[1])+uint64(v[2]) > 1<<32-1 {
			return nil, fmt.Errorf("id map %q: the range runs past the last id (4294967294)", part)
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: v[0], HostID: v[1], Size: v[2]})
	}
	return out, nil
}

func checkIDMap(kind idpool.Kind, m []syscall.SysProcIDMap, allowSystem bool) error {
	for _, e := range m {
		if e.HostID == 0 {
			return fmt.Errorf("%w (%d:%d:%d)", ErrHostRoot, e.ContainerID, e.HostID, e.Size)
		}
		if e.HostID < 0 || e.Size <= 0 || uint64(e.HostID)+uint64(e.Size) > 1<<32-1 {
			return fmt.Errorf("%s map %d:%d:%d: out of range", kind, e.ContainerID, e.HostID, e.Size)
		}
		if allowSystem {
			continue
		}
		if err := idpool.CheckHostRange(kind, uint32(e.HostID), uint32(e.Size)); err != nil {
			return fmt.Errorf("%s map %d:%d:%d: %w (pass --allow-system-ids if you mean it)", kind, e.ContainerID, e.HostID, e.Size, err)
		}
	}
	return nil
}

// mountOptions are the bpffs options of a workload: its delegation, and its
// owner's ids (given as ids inside its user namespace) as host ids, which is
// how the privileged side, in the initial user namespace, must say them.
func mountOptions(cfg Config, sb *sandbox) (bpffs.Options, error) {
	opts := bpffs.Options{Delegation: cfg.Delegation, Mode: cfg.Owner.Mode}
	for _, o := range []struct {
		in   *uint32
		out  **uint32
		m    []syscall.SysProcIDMap
		kind string
	}{{cfg.Owner.UID, &opts.UID, sb.uidMap, "uid"}, {cfg.Owner.GID, &opts.GID, sb.gidMap, "gid"}} {
		if o.in == nil {
			continue
		}
		host, ok := hostID(o.m, *o.in)
		if !ok {
			return opts, fmt.Errorf("the bpffs owner's %s %d is not mapped in the workload's user namespace", o.kind, *o.in)
		}
		*o.out = &host
	}
	return opts, nil
}

func hostID(m []syscall.SysProcIDMap, id uint32) (uint32, bool) {
	for _, e := range m {
		if int64(id) >= int64(e.ContainerID) && int64(id) < int64(e.ContainerID)+int64(e.Size) {
			return uint32(int64(e.HostID) + int64(id) - int64(e.ContainerID)), true
		}
	}
	return 0, false
}

func mapText(m []syscall.SysProcIDMap) string {
	var b strings.Builder
	for _, e := range m {
		fmt.Fprintf(&b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
	}
	return b.String()
}

// sandbox is what Start sets up before the supervisor runs, and tears down
// if it fails.
type sandbox struct {
	lease          *idpool.Lease
	parent         *os.File // where the supervisor makes the workload's cgroup
	cgname         string
	uidMap, gidMap []syscall.SysProcIDMap
}

func (sb *sandbox) release() {
	if sb.parent != nil {
		sb.parent.Close()
	}
	if sb.lease != nil {
		sb.lease.Release()
	}
}

// sweepStale removes the empty cgroups of bpfgate processes that died
// before their sandbox's supervisor took charge of them (killed during
// Start). A cgroup's name carries the pid of the bpfgate that made it.
func sweepStale() {
	root, err := cgroup.Root()
	if err != nil {
		return
	}
	ents, err := os.ReadDir(filepath.Join(root, CgroupParent))
	if err != nil {
		return
	}
	for _, e := range ents {
		var uid, pid, n int
		if _, err := fmt.Sscanf(e.Name(), "run-%d-%d-%d", &uid, &pid, &n); err != nil || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err != unix.ESRCH {
			continue // alive, or a pid reused: leave it
		}
		g, err := cgroup.Open(CgroupParent, e.Name())
		if err != nil {
			continue
		}
		if busy, err := g.Populated(); err == nil && !busy {
			_ = g.Remove(100 * time.Millisecond)
		}
		g.Close()
	}
}

// runs numbers the workloads this process starts, for their cgroups' names.
var runs atomic.Uint64

// cleanupTimeout bounds how long removing a workload's cgroup may take.
const cleanupTimeout = 5 * time.Second

func prepare(cfg *Config) (*sandbox, error) {
	sb := &sandbox{uidMap: cfg.UIDMap, gidMap: cfg.GIDMap}
	if sb.uidMap == nil {
		pool := cfg.IDPool
		if pool == nil {
			p, err := idpool.Default()
			if err != nil {
				return nil, err
			}
			pool = &p
		}
		lease, err := pool.Acquire()
		if err != nil {
			return nil, fmt.Errorf("host ids for the workload: %w", err)
		}
		sb.lease = lease
		sb.uidMap = lease.IDMap()
	} else if err := checkIDMap(idpool.UID, sb.uidMap, cfg.AllowSystemIDs); err != nil {
		return nil, err
	}
	if sb.gidMap == nil {
		sb.gidMap = sb.uidMap
	} else if err := checkIDMap(idpool.GID, sb.gidMap, cfg.AllowSystemIDs); err != nil {
		sb.release()
		return nil, err
	}
	sweepStale()
	name := fmt.Sprintf("run-%d-%d-%d", sb.uidMap[0].HostID, os.Getpid(), runs.Add(1))
	parent, err := cgroup.MakeParent(CgroupParent)
	if err != nil {
		sb.release()
		return nil, fmt.Errorf("the workloads' cgroup: %w", err)
	}
	sb.parent, sb.cgname = parent, name
	return sb, nil
}

// Start runs the workload in a sandbox of its own and returns once its
// bpffs is mounted and the command has been executed. On error nothing is
// left running or mounted, and no cgroup is left behind.
func Start(cfg Config) (*Workload, error) {
	if len(cfg.Args) == 0 {
		return nil, errors.New("no command given")
	}
	if !nsexec.Available {
		return nil, ErrNoHelper
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if !cfg.Delegation.IsZero() {
		if err := bpffs.CheckTokenSupport(); err != nil {
			return nil, err
		}
	}
	path := cfg.Path
	if path == "" {
		path = delegate.DefaultPath
	}
	caps := cfg.Caps
	if len(caps) == 0 {
		caps = []delegate.Cap{unix.CAP_BPF}
	}
	for _, c := range caps {
		if c == unix.CAP_SYS_ADMIN {
			return nil, ErrSysAdmin
		}
	}
	sb, err := prepare(&cfg)
	if err != nil {
		return nil, err
	}

	opts, err := mountOptions(cfg, sb)
	if err != nil {
		sb.release()
		return nil, err
	}
	host, child, err := socketPair()
	if err != nil {
		sb.release()
		return nil, err
	}
	defer host.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		child.Close()
		sb.release()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	defer lifeR.Close()
	leaseFile, err := os.Open(os.DevNull)
	if err != nil {
		child.Close()
		lifeW.Close()
		sb.release()
		return nil, err
	}
	defer leaseFile.Close()
	if sb.lease != nil {
		leaseFile = sb.lease.File()
	}

	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	net := "none"
	if cfg.Net == NetHost {
		net = "host"
	}
	extra := append(cfg.ExtraFiles[:len(cfg.ExtraFiles):len(cfg.ExtraFiles)], child, lifeR, sb.parent, leaseFile)
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: append([]string{"bpfgate-sandbox"}, cfg.Args...),
		Env: append(env[:len(env):len(env)],
			nsexec.EnvMode+"="+nsexec.ModeSandbox,
			nsexec.EnvNFDs+"="+strconv.Itoa(len(cfg.ExtraFiles)),
			nsexec.EnvUIDMap+"="+mapText(sb.uidMap),
			nsexec.EnvGIDMap+"="+mapText(sb.gidMap),
			nsexec.EnvNet+"="+net,
			nsexec.EnvTarget+"="+path,
			nsexec.EnvCaps+"="+strconv.FormatUint(capMask(caps), 16),
			nsexec.EnvCgName+"="+sb.cgname,
			nsexec.EnvUnix+"="+map[bool]string{true: "allow", false: "deny"}[cfg.AllowUnixSockets],
			nsexec.EnvRecord+"="+map[bool]string{true: nsexec.RecordBPF, false: "none"}[cfg.RecordBPF]),
		Dir:        cfg.Dir,
		Stdin:      cfg.Stdin,
		Stdout:     cfg.Stdout,
		Stderr:     cfg.Stderr,
		ExtraFiles: extra,
	}
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	err = cmd.Start()
	child.Close()
	if err != nil {
		lifeW.Close()
		sb.release()
		return nil, fmt.Errorf("start workload: %w", err)
	}
	w := &Workload{cmd: cmd, life: lifeW, parent: sb.parent, cgname: sb.cgname, lease: sb.lease, uidMap: sb.uidMap}

	ctx := context.Background()
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	if err := bpffs.ServeDelegationContext(ctx, host, opts, nil); err != nil {
		return nil, w.abort(err)
	}
	listener, err := waitExec(int(host.Fd()), waitLeft(ctx), cfg.RecordBPF)
	if err != nil {
		return nil, w.abort(err)
	}
	w.listener = listener
	return w, nil
}

func capMask(caps []delegate.Cap) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m
}

// ErrSysAdmin means the workload was to keep CAP_SYS_ADMIN: in its own user
// namespace that would let it unmount what the sandbox put over the host's
// BPF filesystems, cgroups and namespace files.
var ErrSysAdmin = errors.New("a workload may not keep CAP_SYS_ADMIN: with it, it could undo the sandbox's mounts")

// ErrNoHelper means this binary was built without cgo, so it has no C
// helpers (package launch/nsexec) and cannot build a sandbox.
var ErrNoHelper = errors.New("this bpfgate was built without cgo: running workloads and mounting into processes need its C helpers (rebuild with CGO_ENABLED=1)")

// waitExec waits for the child's announcement that it executes the
// workload, then for the EOF that the exec causes (the socket is
// close-on-exec), or for an error message. With record, the seccomp
// listener must come first: without it the start fails.
func waitExec(host int, limit time.Duration, record bool) (*os.File, error) {
	announced := false
	var listener *os.File
	fail := func(err error) (*os.File, error) {
		if listener != nil {
			listener.Close()
		}
		return nil, err
	}
	for {
		msg, fd, err := recvBounded(host, limit)
		switch {
		case err == nil && string(msg) == nsexec.MsgListener && record && listener == nil && !announced && fd >= 0:
			listener = os.NewFile(uintptr(fd), "bpfgate-seccomp-listener")
			continue
		case fd >= 0:
			unix.Close(fd)
		}
		switch {
		case errors.Is(err, bpffs.ErrPeerGone) && announced:
			return listener, nil
		case err != nil:
			return fail(fmt.Errorf("wait for exec: %w", err))
		case string(msg) == nsexec.MsgExec && record && listener == nil:
			return fail(errors.New("the workload side did not pass the seccomp listener that records its bpf() calls"))
		case string(msg) == nsexec.MsgExec:
			announced = true
		case string(msg) == nsexec.MsgListener:
			return fail(errors.New("the workload side sent an unexpected seccomp listener"))
		default:
			return fail(errors.New(strings.TrimPrefix(string(msg), nsexec.MsgError)))
		}
	}
}

// recvBounded waits at most limit for one message.
func recvBounded(sock int, limit time.Duration) ([]byte, int, error) {
	fds := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLIN}}
	deadline := time.Now().Add(limit)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, -1, bpffs.ErrTimeout
		}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return nil, -1, fmt.Errorf("poll: %w", err)
		}
		msg, fd, err := sys.Recv(sock, make([]byte, 4096))
		if err != nil {
			return nil, -1, err
		}
		if len(msg) == 0 && fd < 0 {
			return nil, -1, bpffs.ErrPeerGone
		}
		return msg, fd, nil
	}
}

// abort ends the sandbox after a failed start and adds how it ended to err:
// closing the life line makes the supervisor kill the sandbox and remove
// its cgroup.
func (w *Workload) abort(err error) error {
	if !errors.Is(err, bpffs.ErrTimeout) {
		// The sandbox exits by itself after it reported an error; give it
		// the chance, so that its exit status tells what happened.
		w.exited(abortGrace)
	}
	w.life.Close()
	code, waitErr := w.wait()
	switch {
	case code == nsexec.ExitNotFound || code == nsexec.ExitNoExec:
		return &ExecError{Code: code, Err: err}
	case waitErr == nil && code == 128+int(syscall.SIGKILL) && errors.Is(err, bpffs.ErrPeerGone):
		return fmt.Errorf("%w (the workload side was killed)", err)
	}
	return err
}

func socketPair() (host, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "bpfgate-handshake-host"), os.NewFile(uintptr(fds[1]), "bpfgate-handshake"), nil
}

// Pid returns the process id of the workload's supervisor, which runs on
// the host; the workload itself runs in a PID namespace of its own.
func (w *Workload) Pid() int { return w.cmd.Process.Pid }

// BPFListener returns the seccomp listener of a workload started with
// RecordBPF, and hands it over: the caller must close it, and nil is
// returned from then on (and always without RecordBPF). Until someone
// answers its notifications, the workload's recorded bpf() calls wait;
// once the listener is closed they fail with ENOSYS.
func (w *Workload) BPFListener() *os.File {
	l := w.listener
	w.listener = nil
	return l
}

// UIDMap returns the workload's uid map.
func (w *Workload) UIDMap() []syscall.SysProcIDMap { return w.uidMap }

// Cgroup returns the path of the workload's cgroup.
func (w *Workload) Cgroup() string { return filepath.Join(w.parent.Name(), w.cgname) }

// Signal sends sig to the workload (through its supervisor and init).
func (w *Workload) Signal(sig os.Signal) error { return w.cmd.Process.Signal(sig) }

// Wait waits for the workload and returns its exit code: the command's own,
// or 128 plus the signal that killed it, as shells report it. Its cgroup is
// gone and its host ids are free again when Wait returns. A bpf() listener
// nobody took is closed first, so that no recorded call waits forever.
func (w *Workload) Wait() (int, error) {
	if l := w.BPFListener(); l != nil {
		l.Close()
	}
	code, err := w.wait()
	w.life.Close()
	return code, err
}

// abortGrace is how long a failed start waits for the sandbox to end by
// itself before it ends it.
const abortGrace = 2 * time.Second

// exited waits up to d for the supervisor to exit, without reaping it.
func (w *Workload) exited(d time.Duration) bool {
	pidfd, err := unix.PidfdOpen(w.cmd.Process.Pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond)+1)
		if err == nil && n > 0 {
			return true
		}
		if err != nil && err != unix.EINTR {
			return false
		}
	}
	return false
}

func (w *Workload) wait() (int, error) {
	err := w.cmd.Wait()
	code := -1
	if st := w.cmd.ProcessState; st != nil {
		code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		if code >= 0 {
			err = nil
		}
	}
	// The supervisor removed the cgroup; this is the backstop in case it
	// was killed before it could.
	if g, openErr := cgroup.Open(CgroupParent, w.cgname); openErr == nil {
		if rmErr := g.Remove(cleanupTimeout); rmErr != nil && err == nil {
			err = fmt.Errorf("remove the workload's cgroup: %w", rmErr)
		}
		g.Close()
	}
	w.parent.Close()
	if w.lease != nil {
		w.lease.Release()
	}
	return code, err
}

// forwarded are the signals Run passes on to the workload.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT}

// Run starts the workload, forwards signals to it and waits for it.
func Run(cfg Config) (int, error) {
	return RunStarted(cfg, nil)
}

// RunStarted is Run, calling started (if not nil) once the workload has
// started, before it is waited for: e.g. to watch it by its cgroup or ids.
func RunStarted(cfg Config, started func(*Workload)) (int, error) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	w, err := Start(cfg)
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee.Code, err
	}
	if err != nil {
		return nsexec.ExitSetup, err
	}
	if started != nil {
		started(w)
	}
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
	return code, err
}
