package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/launch"
)

func newMountCmd(g *globals) *cobra.Command {
	var (
		df             delegationFlags
		uid, gid, mode string
		pid            int
	)
	cmd := &cobra.Command{
		Use:   "mount PATH",
		Short: "Mount a (delegated) BPF filesystem",
		Long: `Mount a BPF filesystem on PATH in the current namespaces, or, with --pid,
delegated to that process's user namespace and mounted at PATH inside its
mount namespace (for example a container's init).`,
		Example: `  bpfgate mount /run/bpf
  bpfgate mount --pid 4242 --profile net /sys/fs/bpf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, r, err := df.load(g)
			if err != nil {
				return err
			}
			opts := bpffs.Options{Delegation: r.set}
			if opts.UID, err = optUint("uid", uid, 10); err != nil {
				return err
			}
			if opts.GID, err = optUint("gid", gid, 10); err != nil {
				return err
			}
			if opts.Mode, err = optUint("mode", mode, 8); err != nil {
				return err
			}
			for _, w := range names.Lint(r.set) {
				cmd.PrintErrln("bpfgate: warning:", w.Message)
			}
			if pid != 0 {
				err = launch.MountInto(pid, args[0], opts)
			} else {
				err = bpffs.Mount(args[0], opts)
			}
			if err != nil {
				return err
			}
			return g.printNull()
		},
	}
	df.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&uid, "uid", "", "owner of the filesystem root")
	fl.StringVar(&gid, "gid", "", "group of the filesystem root")
	fl.StringVar(&mode, "mode", "", "mode of the filesystem root, octal")
	fl.IntVar(&pid, "pid", 0, "delegate to this process's user namespace and mount inside its mount namespace")
	return cmd
}

func optUint(name, s string, base int) (*uint32, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, base, 32)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: not a number", name, s)
	}
	u := uint32(v)
	return &u, nil
}
