// Package guard protects the trees bpfgate preload manages, even from root,
// with BPF LSM programs: the userspace answer the kernel's reviewers gave
// to the bpf_preload series, which wanted preloaded programs "even root
// cannot interfere" with.
//
// Enable loads the guard, attaches one BPF LSM program per hook and pins
// the links and maps below the protected root, in ROOT/@guard, so that the
// guard outlives the process that enabled it. From then on the kernel
// refuses, with EPERM, to every process but the manager:
//
//   - unlink, rename (both ways), rmdir, mkdir, symlink, hard links and
//     pinning (BPF_OBJ_PIN) in the tree, and chmod, chown or truncate of
//     anything in it;
//   - opening a pin in the tree for writing (map updates, link detach by
//     pin);
//   - unmounting the mount the tree is reached through, or (lazily) any
//     mount above it, and mounting anything over the tree's bpffs or over
//     any of its directories (mount(2), move_mount(2));
//   - writes to the guard's maps and to those of the tree, BPF_LINK_DETACH
//     and BPF_LINK_UPDATE of its links and of the tree's, and programs
//     that would attach to their programs, through a syscall on an fd,
//     also one from an id (Sync keeps the list of the tree's ids; the maps
//     the tree's programs use, and what its map-in-maps and program arrays
//     hold, are on it too); write-mode fds of the guard's own maps, and
//     any fd of its record of the tree's mount;
//   - writing /proc/sys/kernel/ftrace_enabled, whose 0 would switch off the
//     trampolines every BPF LSM program runs from;
//   - opening the manager's executable for writing, changing its
//     attributes, unlinking it or renaming over it (a freed inode number
//     could go to a new file), tracing a manager process (ptrace, /proc/PID/mem,
//     process_vm_writev, pidfd_getfd), exec of the manager by a traced
//     process, and pointing another process's executable link at the
//     manager's file (prctl PR_SET_MM_EXE_FILE).
//
// The tree is known by its directory's inode and its bpffs superblock's
// device, never by a path, so a rename or a bind mount cannot move it out
// of protection. The manager is every process whose executable is the inode
// (device and inode number) that enabled the guard: bpfgate itself. A copy
// of bpfgate is another inode and is not the manager; writing the manager's
// file in place and tracing the manager are refused, so no other code runs
// as the manager that way. Disable, from the manager, unpins the guard,
// which detaches it. Lock, from the manager, takes the manager away: then
// nobody changes the tree or disables the guard until the next boot.
//
// Where the kernel refuses BPF LSM programs (it needs CONFIG_BPF_LSM, bpf in
// the lsm= list, and must allow trampoline programs), Enable returns
// ErrUnsupported with what the kernel said and leaves nothing behind.
//
// What the guard cannot stop is described in docs/preload.md: a reboot with
// another lsm=, moving the mount (MS_MOVE), kernel modules, kexec, the
// manager itself, which root can run until the guard is locked, and writes
// to the tree's maps by root's own programs, through writable mmaps, or by
// swapping fds while the bpf hook looks.
package guard
