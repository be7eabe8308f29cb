package launch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/sys"
)

var (
	// ErrHostRoot means an id map would map host root into the workload.
	ErrHostRoot = errors.New("the id map includes host id 0: bpfgate never runs a workload as host root")
	// ErrNotRoot means the caller cannot set delegate_* options.
	ErrNotRoot = errors.New("delegating BPF needs root (CAP_SYS_ADMIN in the initial user namespace)")
)

// DefaultPath is where the workload finds its bpffs, and where libbpf and
// cilium/ebpf look for a token.
const DefaultPath = delegate.DefaultPath

// DefaultIDMap maps the workload's root to an unprivileged host range, like
// podman's --uidmap 0:100000:65536.
var DefaultIDMap = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}

// Config describes a workload.
type Config struct {
	Args []string // the command and its arguments
	Env  []string // nil means the caller's environment
	Dir  string

	Delegation delegate.Set
	// BPFFS are the bpffs options besides the delegation (owner and mode).
	BPFFS bpffs.Options
	// Path is where the bpffs is mounted inside; DefaultPath if empty.
	Path string
	// UIDMap and GIDMap default to DefaultIDMap.
	UIDMap, GIDMap []syscall.SysProcIDMap
	// Caps are the capabilities the workload keeps inside its user
	// namespace; it has none in the host's. CAP_BPF if empty; CapsFor
	// gives what a delegation needs.
	Caps []Cap

	// Net is the workload's network: NetNone (the default) gives it a
	// network namespace of its own with only lo; NetHost shares the
	// host's, so that XDP, tc and socket programs reach host interfaces.
	Net NetMode
	// PreserveFDs passes the caller's fds 3 to 3+PreserveFDs-1 on to the
	// workload, as runc and podman do; every other fd is closed.
	PreserveFDs int
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

// Workload is a running command.
type Workload struct {
	cmd *exec.Cmd
}

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
		out = append(out, syscall.SysProcIDMap{ContainerID: v[0], HostID: v[1], Size: v[2]})
	}
	return out, nil
}

func checkIDMap(m []syscall.SysProcIDMap) error {
	for _, e := range m {
		if e.HostID == 0 {
			return fmt.Errorf("%w (%d:%d:%d)", ErrHostRoot, e.ContainerID, e.HostID, e.Size)
		}
	}
	return nil
}

// Start runs the workload and returns once its bpffs is mounted and the
// command has been executed. On error nothing is left running or mounted.
func Start(cfg Config) (*Workload, error) {
	if len(cfg.Args) == 0 {
		return nil, errors.New("no command given")
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if !cfg.Delegation.IsZero() {
		if err := bpffs.CheckTokenSupport(); err != nil {
			return nil, err
		}
	}
	uidMap, gidMap := cfg.UIDMap, cfg.GIDMap
	if uidMap == nil {
		uidMap = DefaultIDMap
	}
	if gidMap == nil {
		gidMap = DefaultIDMap
	}
	if err := checkIDMap(uidMap); err != nil {
		return nil, fmt.Errorf("uid map: %w", err)
	}
	if err := checkIDMap(gidMap); err != nil {
		return nil, fmt.Errorf("gid map: %w", err)
	}
	path := cfg.Path
	if path == "" {
		path = DefaultPath
	}
	caps := cfg.Caps
	if len(caps) == 0 {
		caps = []Cap{unix.CAP_BPF}
	}

	host, child, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer unix.Close(host)

	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: append([]string{"bpfgate-init"}, cfg.Args...),
		Env: append(env[:len(env):len(env)], childEnv+"=run", targetEnv+"="+path,
			capsEnv+"="+strconv.FormatUint(capMask(caps), 16)),
		Dir:        cfg.Dir,
		Stdin:      cfg.Stdin,
		Stdout:     cfg.Stdout,
		Stderr:     cfg.Stderr,
		ExtraFiles: []*os.File{child},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			// Become the namespace root (host uid from the map), so that the exec
			// gives the child full capabilities inside its user namespace.
			Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
			UidMappings: uidMap,
			GidMappings: gidMap,
		},
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
		return nil, fmt.Errorf("start workload: %w", err)
	}

	opts := cfg.BPFFS
	opts.Delegation = cfg.Delegation
	if err := bpffs.ServeDelegation(host, opts); err != nil {
		return nil, abort(cmd, err)
	}
	if err := waitExec(host); err != nil {
		return nil, abort(cmd, err)
	}
	return &Workload{cmd: cmd}, nil
}

// waitExec waits for the child's announcement that it executes the
// workload, then for the EOF that the exec causes (the socket is
// close-on-exec), or for an error message.
func waitExec(host int) error {
	announced := false
	for {
		msg, fd, err := sys.Recv(host, make([]byte, 4096))
		if fd >= 0 {
			unix.Close(fd)
		}
		switch {
		case err != nil:
			return fmt.Errorf("wait for exec: %w", err)
		case len(msg) == 0 && announced:
			return nil
		case len(msg) == 0:
			return fmt.Errorf("wait for exec: %w", bpffs.ErrPeerGone)
		case string(msg) == msgExec:
			announced = true
		default:
			return errors.New(strings.TrimPrefix(string(msg), "error: "))
		}
	}
}

// abort kills and reaps the child and adds how it ended to err.
func abort(cmd *exec.Cmd, err error) error {
	_ = cmd.Process.Kill()
	state, _ := cmd.Process.Wait()
	if state != nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && errors.Is(err, bpffs.ErrPeerGone) {
			return fmt.Errorf("%w (the workload side was killed)", err)
		}
	}
	return err
}

func socketPair() (host int, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	return fds[0], os.NewFile(uintptr(fds[1]), "bpfgate-handshake"), nil
}

// Pid returns the workload's process id.
func (w *Workload) Pid() int { return w.cmd.Process.Pid }

// Signal sends sig to the workload.
func (w *Workload) Signal(sig os.Signal) error { return w.cmd.Process.Signal(sig) }

// Wait waits for the workload and returns its exit code: the command's own,
// or 128 plus the signal that killed it, as shells report it.
func (w *Workload) Wait() (int, error) {
	err := w.cmd.Wait()
	state := w.cmd.ProcessState
	if state == nil {
		return -1, err
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return state.ExitCode(), nil
}

// forwarded are the signals Run passes on to the workload.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT}

// Run starts the workload, forwards signals to it and waits for it.
func Run(cfg Config) (int, error) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	w, err := Start(cfg)
	if err != nil {
		return exitSetup, err
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
