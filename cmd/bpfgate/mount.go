package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

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
mount namespace (for example a container's init).

Delegation (--profile, --cmds, --maps, --progs, --attachs) needs --pid: a
bpffs mounted here belongs to this user namespace, and the kernel never makes
a BPF token in the host's. To start a workload with a delegated bpffs, use
'bpfgate run'. PATH must not already be the root of a bpffs mount: a second
mount would hide the first.`,
		Example: `  bpfgate mount /run/bpf
  bpfgate mount --pid 4242 --profile net /sys/fs/bpf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pid == 0 && df.delegates() {
				return errors.New("delegation options need --pid: a bpffs mounted from here belongs to the host's user namespace, " +
					"where the kernel never makes a BPF token, and its delegation cannot move to another namespace later; " +
					"use 'bpfgate run' to start a workload with a delegated bpffs, or 'bpfgate mount --pid PID PATH' to delegate to a running process's user namespace")
			}
			if err := refuseStacking(pid, args[0]); err != nil {
				return err
			}
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

// delegates says whether any delegation flag was given.
func (f *delegationFlags) delegates() bool {
	return f.profile != "" || f.cmds != "" || f.maps != "" || f.progs != "" || f.attachs != ""
}

// refuseStacking refuses a path that already is the root of a bpffs mount,
// on the host or, with pid, inside that process's mount namespace: mounting
// again would stack a second bpffs that hides the first. It is a guard
// against a mistake, not a boundary: when the check itself fails, the mount
// goes ahead and reports its own errors.
func refuseStacking(pid int, path string) error {
	root := "/"
	if pid != 0 {
		root = fmt.Sprintf("/proc/%d/root", pid)
	} else if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if !filepath.IsAbs(path) || !bpffsMountRoot(root, path) {
		return nil
	}
	where := ""
	if pid != 0 {
		where = fmt.Sprintf(" in the mount namespace of process %d", pid)
	}
	return fmt.Errorf("%s%s is already the root of a bpffs mount; another mount would stack on it and hide it "+
		"(umount %s first to replace it; bpfgate token show %s shows what it delegates)", path, where, path, path)
}

// bpffsMountRoot says whether path, resolved inside root, is the root of a
// bpffs mount.
func bpffsMountRoot(root, path string) bool {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(rfd)
	fd, err := unix.Openat2(rfd, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	var stx unix.Statx_t
	if unix.Fstatfs(fd, &sfs) != nil || unix.Statx(fd, "", unix.AT_EMPTY_PATH, 0, &stx) != nil {
		return false
	}
	return sfs.Type == unix.BPF_FS_MAGIC && stx.Attributes&stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0
}
