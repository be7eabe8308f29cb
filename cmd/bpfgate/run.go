package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

func newRunCmd(g *globals) *cobra.Command {
	var (
		df             delegationFlags
		path           string
		uidMap, gidMap string
		caps           []string
		quiet          bool
		netMode        string
		preserveFDs    int
		allowSystemIDs bool
		allowUnix      bool
		auditFile      string
	)
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command unprivileged with delegated BPF rights",
		Long: `Run COMMAND in a sandbox whose reach equals its delegation: new user, mount,
network (only lo; --net host shares the host's), cgroup (a cgroup of its own,
mounted at /sys/fs/cgroup), IPC and PID namespaces, mapped to a block of host
ids no other workload holds (never host root or an account's), with only
fds 0-2 (and --preserve-fds), no unix sockets but connected socketpairs
(--allow-unix-sockets), a delegated BPF filesystem at /sys/fs/bpf and CAP_BPF
(plus what the delegated types need) in its user namespace only. Programs
built on cilium/ebpf (v0.22+) or libbpf (1.4+) find the token there by
themselves. Exit status (126 and 127 as a shell gives them, 125 when the
sandbox could not be set up), signals and standard streams pass through;
SIGKILL of bpfgate takes the sandbox with it. See docs/sandbox.md.`,
		Example: `  # A socket filter workload with the demo profile
  bpfgate run --profile demo -- bpfgate token probe

  # Exactly these rights, nothing else
  bpfgate run --cmds map_create,prog_load,btf_load --maps hash --progs xdp --attachs xdp -- ./loader`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, r, err := df.load(g)
			if err != nil {
				return err
			}
			if r.set.IsZero() {
				return fmt.Errorf("nothing to delegate: give --profile or --cmds/--maps/--progs/--attachs")
			}
			if !quiet {
				for _, w := range names.Lint(r.set) {
					fmt.Fprintln(os.Stderr, "bpfgate: warning:", w.Message)
				}
			}
			cfg := launch.Config{Args: args, Delegation: r.set, Path: path}
			cfg.Caps = delegate.CapsFor(names, r.set)
			if r.profile != nil {
				// The profile's own capabilities; flags may have added types.
				grant, err := r.profile.Grant(names)
				if err != nil {
					return err
				}
				for _, c := range grant.Caps {
					if !slices.Contains(cfg.Caps, c) {
						cfg.Caps = append(cfg.Caps, c)
					}
				}
			}
			if cmd.Flags().Changed("caps") {
				if cfg.Caps, err = delegate.ParseCaps(caps); err != nil {
					return err
				}
			}
			if uidMap != "" {
				if cfg.UIDMap, err = launch.ParseIDMap(uidMap); err != nil {
					return err
				}
			}
			if gidMap != "" {
				if cfg.GIDMap, err = launch.ParseIDMap(gidMap); err != nil {
					return err
				}
			} else {
				cfg.GIDMap = cfg.UIDMap
			}
			switch netMode {
			case "none", "":
				cfg.Net = launch.NetNone
			case "host":
				cfg.Net = launch.NetHost
			default:
				return fmt.Errorf("--net %q: want none (a network namespace of its own, only lo) or host", netMode)
			}
			if cfg.ExtraFiles, err = inheritedFiles(preserveFDs); err != nil {
				return err
			}
			cfg.AllowSystemIDs = allowSystemIDs
			cfg.AllowUnixSockets = allowUnix
			if allowUnix && !quiet {
				fmt.Fprintln(os.Stderr, "bpfgate: warning: --allow-unix-sockets: the workload can pass its BPF programs and maps out through a unix socket, where any local user can attach them")
			}
			if cfg.Net == launch.NetHost && !quiet {
				fmt.Fprintln(os.Stderr, "bpfgate: warning: --net host: "+hostNetReach(names, r.set))
			}
			run := launch.Run
			if auditFile != "" {
				run = func(cfg launch.Config) (int, error) { return runAudited(cfg, auditFile) }
			}
			code, err := run(cfg)
			var ee *launch.ExecError
			if errors.As(err, &ee) {
				fmt.Fprintf(os.Stderr, "bpfgate: run %s: %v\n", args[0], err)
				return exitError{code: ee.Code}
			}
			if err != nil {
				// Setup failures exit 125, as podman's and runc's do.
				fmt.Fprintf(os.Stderr, "bpfgate: run %s: %v\n", args[0], err)
				return exitError{code: code}
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	df.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&path, "bpffs-path", delegate.DefaultPath, "where the delegated bpffs is mounted inside")
	fl.StringVar(&uidMap, "uid-map", "", "uid map inside:host:count[,...] (default: a block of 65536 host ids of its own from the id pool, see docs/sandbox.md)")
	fl.StringVar(&gidMap, "gid-map", "", "gid map (default: as --uid-map)")
	fl.StringSliceVar(&caps, "caps", nil, "capabilities kept inside the user namespace (default: CAP_BPF, plus CAP_NET_ADMIN or CAP_PERFMON where the delegated types need them)")
	fl.StringVar(&netMode, "net", "none", "network: none (own network namespace with only lo) or host (the host's: the delegation then reaches host interfaces)")
	fl.IntVar(&preserveFDs, "preserve-fds", 0, "pass this many extra fds (3, 4, ...) to the workload; every other fd is closed")
	fl.BoolVar(&allowUnix, "allow-unix-sockets", false, "let the workload make unix sockets (through which its BPF objects can leave the sandbox)")
	fl.BoolVar(&allowSystemIDs, "allow-system-ids", false, "allow --uid-map/--gid-map onto host ids of system users and groups")
	fl.StringVar(&auditFile, "audit", "", "record the workload's bpf() calls made with its token, and those refused, to FILE as JSON lines (see docs/audit.md)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "do not print delegation warnings, nor what --net host reaches")
	fl.SetInterspersed(false)
	return cmd
}

// hostNetReach says what a delegation reaches when the workload shares the
// host's network namespace.
func hostNetReach(names *delegate.Names, set delegate.Set) string {
	caps := delegate.CapsFor(names, set)
	for _, c := range caps {
		if c == unix.CAP_NET_ADMIN {
			return "the workload shares the host's network namespace, and its delegation lets it attach XDP and tc programs to every host interface, see all host traffic and send frames out of host interfaces"
		}
	}
	return "the workload shares the host's network namespace: it sees every host interface and can use the host's network"
}

// inheritedFiles returns fds 3 to 3+n-1, each of which must have been open
// when bpfgate was executed: the caller's to pass on, not one the Go
// runtime or bpfgate opened since.
func inheritedFiles(n int) ([]*os.File, error) {
	if n < 0 {
		return nil, fmt.Errorf("--preserve-fds %d: want a count of 0 or more", n)
	}
	files := make([]*os.File, 0, n)
	for fd := 3; fd < 3+n; fd++ {
		if !nsexec.InheritedFD(fd) {
			return nil, fmt.Errorf("--preserve-fds %d: fd %d was not open when bpfgate started (pass fds 3 to %d, e.g. 3<file)", n, fd, 2+n)
		}
		files = append(files, os.NewFile(uintptr(fd), "fd "+strconv.Itoa(fd)))
	}
	return files, nil
}
