package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/preload"
	"github.com/bpfgate/bpfgate/preload/guard"
)

// newPreloadGuardCmd is bpfgate preload guard: the BPF LSM that keeps
// everyone but bpfgate preload from changing the tree below --root.
func newPreloadGuardCmd(g *globals, root *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guard",
		Short: "Protect the preload tree from everyone but bpfgate preload, even root",
		Long: `Protect the pinned tree below --root (the objects preload manages, and the
guard's own links and maps in --root/@guard) with BPF LSM programs: unlink,
rename, rmdir, mkdir, pinning, chmod, umount, mounting over it, opening pins
for writing, detaching or updating the guard's links, writing its maps and
switching ftrace off are refused with EPERM to every process but this
bpfgate executable. Needs a kernel with CONFIG_BPF_LSM and bpf in lsm=.
docs/preload.md says what the guard cannot stop.`,
	}
	opts := func() guard.Options { return guard.Options{Root: *root} }

	var lockToo bool
	enable := &cobra.Command{
		Use:   "enable",
		Short: "Load the guard and pin it below --root; this executable becomes its manager",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := guard.Enable(opts())
			if err != nil {
				return err
			}
			if lockToo {
				if err := guard.Lock(opts()); err != nil {
					// Nothing half done: an unlocked guard was not asked
					// for. A Lock that failed after it emptied the
					// managers did lock, and then nothing can disable.
					if st, serr := guard.Status(opts()); serr == nil && st.Locked {
						return fmt.Errorf("%w; the guard is locked all the same (bpfgate preload guard status)", err)
					}
					if derr := guard.Disable(opts()); derr != nil {
						return fmt.Errorf("%w; and disabling the unlocked guard failed too: %v", err, derr)
					}
					return fmt.Errorf("%w; the guard was disabled again", err)
				}
				if st, err = guard.Status(opts()); err != nil {
					return err
				}
			}
			if g.jsonOut() {
				return g.printJSON(st)
			}
			printGuard(st)
			return nil
		},
	}
	disable := &cobra.Command{
		Use:   "disable",
		Short: "Unpin the guard (only its manager, this bpfgate executable, may)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := guard.Disable(opts()); err != nil {
				return err
			}
			if g.jsonOut() {
				return g.printNull()
			}
			fmt.Println("guard disabled")
			return nil
		},
	}
	enable.Flags().BoolVar(&lockToo, "lock", false, "lock the guard at once (see bpfgate preload guard lock): nothing changes the tree until reboot")
	lock := &cobra.Command{
		Use:   "lock",
		Short: "Take the guard's manager away: nothing changes the tree or disables the guard until reboot",
		Long: `Take the guard's manager away. From then on the guard refuses to every
process, this bpfgate included, what it refused to all but its manager:
nobody applies or removes preloaded objects, changes the tree or disables
the guard until the next boot. It cannot be undone. Only the manager may
lock; status then says "locked".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := guard.Lock(opts()); err != nil {
				return err
			}
			if g.jsonOut() {
				return g.printNull()
			}
			fmt.Println("guard locked until reboot")
			return nil
		},
	}
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Make the guard protect by id exactly what is pinned below --root (apply and remove do it)",
		Long: `Make the guard protect by id, as well as by pin, exactly what is pinned below
--root: every map, program and link, the programs of the links and the maps
those use, so that no fd from an id (bpftool map update id N, link detach id
N) writes or detaches them either. enable, and preload apply and remove
while the guard is on, sync by themselves; run this after changing the tree
through the library. Only the manager may.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := guard.Sync(opts()); err != nil {
				return err
			}
			if g.jsonOut() {
				return g.printNull()
			}
			fmt.Println("guard synced")
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Say whether the guard is on, what it protects, and why not",
		Long: `Say whether the guard is on, what it protects and who manages it, or why it is
not on. The exit status is 0 when it is on, 1 when it is not, 2 when status
could not tell.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := guard.Status(opts())
			if err != nil {
				return statusError(err)
			}
			if g.jsonOut() {
				if err := g.printJSON(st); err != nil {
					return statusError(err)
				}
			} else {
				printGuard(st)
			}
			if !st.Enabled {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.AddCommand(enable, disable, lock, sync, status)
	return cmd
}

func printGuard(st *guard.State) {
	if !st.Enabled {
		fmt.Printf("guard: off for %s: %s\n", st.Root, st.Why)
		return
	}
	fmt.Printf("guard: on, protecting %s (bpffs %s, inode %d) and its own pins in %s\n", st.Root, st.Dev, st.Inode, st.Pins)
	if st.Locked {
		fmt.Println("manager: none: locked until reboot, nothing changes the tree or disables the guard")
	} else {
		fmt.Printf("manager: %s (device %s, inode %d)\n", st.Manager, st.ManagerDev, st.ManagerInode)
	}
	hooks := make([]string, 0, len(st.Links))
	for _, l := range st.Links {
		hooks = append(hooks, fmt.Sprintf("%s (link %d)", l.Hook, l.ID))
	}
	fmt.Printf("hooks: %s\n", strings.Join(hooks, ", "))
	if len(st.Refused) > 0 {
		names := make([]string, 0, len(st.Refused))
		for h := range st.Refused {
			names = append(names, h)
		}
		sort.Strings(names)
		var parts []string
		for _, h := range names {
			parts = append(parts, fmt.Sprintf("%s %d", h, st.Refused[h]))
		}
		fmt.Printf("refused: %s\n", strings.Join(parts, ", "))
	}
}

// syncGuard, after preload changed the tree below root, makes the guard, if
// it is on and not locked, protect by id what is pinned there now. Its error
// says what the change left unprotected.
func syncGuard(root string) error {
	// Status of a guard that is not there would probe the kernel with a
	// program load: not for every apply.
	if root == "" {
		root = preload.DefaultRoot
	}
	if _, err := os.Lstat(filepath.Join(root, guard.Dir)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	st, err := guard.Status(guard.Options{Root: root})
	if err != nil {
		return fmt.Errorf("the tree changed, and whether a guard protects it could not be told (bpfgate preload guard status): %w", err)
	}
	if !st.Enabled || st.Locked {
		return nil
	}
	// Another bpfgate than the manager changed nothing: the guard refused
	// it. (If this cannot be told, Sync says what is wrong.)
	if manager, err := st.CallerIsManager(); err == nil && !manager {
		return nil
	}
	if err := guard.Sync(guard.Options{Root: root}); err != nil {
		return fmt.Errorf("the tree changed, but the guard does not protect all of it by id (bpfgate preload guard sync retries): %w", err)
	}
	return nil
}
