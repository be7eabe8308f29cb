package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/doctor"
	"github.com/bpfgate/bpfgate/launch"
)

// doctorJSON is the report of `doctor --json`.
type doctorJSON struct {
	Pid       int    `json:"pid,omitempty"`
	Container string `json:"container,omitempty"`
	// BPFFS is the bpffs the token would come from, and its delegation.
	BPFFS        string `json:"bpffs,omitempty"`
	*allowedJSON `json:",omitempty"`
	Findings     []doctor.Finding `json:"findings"`
	// ExitCode is the command's, with -- CMD.
	ExitCode *int `json:"exit_code,omitempty"`
	Failed   bool `json:"failed"`
}

// holdCmd is the hidden command doctor's workloads start as: it waits in
// the sandbox until the checks are done, then becomes the command.
const holdCmd = "doctor-hold"

func newDoctorCmd(g *globals) *cobra.Command {
	var (
		df          delegationFlags
		pid         int
		container   string
		runtimeRoot string
		timeout     time.Duration
		caps        []string
		path        string
		netMode     string
	)
	cmd := &cobra.Command{
		Use:   "doctor [--pid PID | --container ID | [flags] -- COMMAND [ARG...]]",
		Short: "Explain why BPF fails for a process, a container or a command",
		Long: `Check, in order, what stands between a process and BPF through a token, and
name the fix for each problem: the kernel's token support, the
unprivileged_bpf_disabled sysctl, lockdown, the bpffs mounts the process sees
and their delegation, whether the kernel creates a token there for its user
namespace, its capabilities there, whether it has a user namespace of its own,
whether its seccomp filters let bpf(2) through (read from the process and
evaluated), cgroup v2 for cgroup programs, libbpf's socket filter probe, and
perf-event based attachments no token allows.

--container ID finds a container with podman (or runc/crun state) and checks
its init process and the seccomp section of its config.json. With -- COMMAND
the command runs in bpfgate run's sandbox (the same delegation flags), is
checked from inside before it starts, and the report ends with how it ended.
Without any of these only the host is checked. The exit status is 1 when a
check fails. See docs/doctor.md.`,
		Example: `  bpfgate doctor --container web
  bpfgate doctor --pid 4242 --json
  bpfgate doctor --profile trace -- ./runqlat 1 1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets := 0
			for _, set := range []bool{pid != 0, container != "", len(args) > 0} {
				if set {
					targets++
				}
			}
			if targets > 1 {
				return errors.New("give one of --pid, --container or -- COMMAND")
			}
			delegating := false
			for _, f := range []string{"profile", "cmds", "maps", "progs", "attachs", "caps", "net", "bpffs-path"} {
				delegating = delegating || cmd.Flags().Changed(f)
			}
			if delegating && len(args) == 0 {
				return errors.New("the delegation flags describe the sandbox of -- COMMAND: give a command")
			}
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			opts := doctor.Options{Names: names, Timeout: timeout}
			var (
				rep  *doctor.Report
				code *int
			)
			switch {
			case pid != 0:
				rep, err = doctor.CheckProcess(pid, opts)
			case container != "":
				rep, err = doctor.CheckContainer(context.Background(), container,
					doctor.ContainerOptions{RuntimeRoot: runtimeRoot}, opts)
			case len(args) > 0:
				var cfg launch.Config
				if cfg, err = doctorSandbox(g, cmd, &df, names, args, caps, path, netMode); err != nil {
					return err
				}
				if g.jsonOut() {
					cfg.Stdout = os.Stderr // stdout is the report's
				}
				var c int
				rep, c, err = doctor.RunCommand(cfg, []string{"/proc/self/exe", holdCmd, "--"}, opts)
				code = &c
			default:
				rep, err = doctor.CheckHost(opts)
			}
			if err != nil {
				return err
			}
			if g.jsonOut() {
				out := doctorJSON{Pid: rep.Pid, Container: rep.Container, BPFFS: rep.BPFFS,
					Findings: rep.Findings, ExitCode: code, Failed: rep.Failed()}
				if rep.Delegation != nil {
					a := allowedOf(names, *rep.Delegation)
					out.allowedJSON = &a
				}
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				fmt.Print(rep)
			}
			if rep.Failed() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	df.register(cmd, true)
	fl := cmd.Flags()
	fl.IntVar(&pid, "pid", 0, "check this process")
	fl.StringVar(&container, "container", "", "check this container (podman, or runc/crun state)")
	fl.StringVar(&runtimeRoot, "runtime-root", "", "runc's or crun's --root, to find --container there")
	fl.DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for the process to stop for ptrace, and for each kernel question")
	fl.StringSliceVar(&caps, "caps", nil, "with -- COMMAND: capabilities kept in the sandbox (as bpfgate run)")
	fl.StringVar(&path, "bpffs-path", delegate.DefaultPath, "with -- COMMAND: where the delegated bpffs is mounted inside")
	fl.StringVar(&netMode, "net", "none", "with -- COMMAND: none or host (as bpfgate run)")
	fl.SetInterspersed(false)
	return cmd
}

// doctorSandbox builds the sandbox of doctor -- COMMAND as bpfgate run
// would, from the same flags.
func doctorSandbox(g *globals, cmd *cobra.Command, df *delegationFlags, names *delegate.Names,
	args, caps []string, path, netMode string) (launch.Config, error) {
	r, err := df.resolve(g, names)
	if err != nil {
		return launch.Config{}, err
	}
	if r.set.IsZero() {
		return launch.Config{}, errors.New("nothing to delegate: give --profile or --cmds/--maps/--progs/--attachs")
	}
	cfg := launch.Config{Args: args, Delegation: r.set, Path: path}
	cfg.Caps = delegate.CapsFor(names, r.set)
	if r.profile != nil {
		grant, err := r.profile.Grant(names)
		if err != nil {
			return cfg, err
		}
		for _, c := range grant.Caps {
			if !slices.Contains(cfg.Caps, c) {
				cfg.Caps = append(cfg.Caps, c)
			}
		}
	}
	if cmd.Flags().Changed("caps") {
		if cfg.Caps, err = delegate.ParseCaps(caps); err != nil {
			return cfg, err
		}
	}
	switch netMode {
	case "none", "":
		cfg.Net = launch.NetNone
	case "host":
		cfg.Net = launch.NetHost
	default:
		return cfg, fmt.Errorf("--net %q: want none or host", netMode)
	}
	return cfg, nil
}

func newDoctorHoldCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    holdCmd + " -- COMMAND [ARG...]",
		Short:  "Wait in the sandbox until bpfgate doctor has looked, then run COMMAND (internal)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := doctor.Hold(args)
			// As a shell: 127 not found, 126 not executable.
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
				return exitError{code: 127, err: err}
			}
			return exitError{code: 126, err: err}
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}
