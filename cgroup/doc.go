// Package cgroup gives each workload a cgroup v2 directory of its own, and
// removes it, with everything running in it, when the workload ends.
//
// Root finds the cgroup2 hierarchy: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a "hybrid" one (cgroup v1 controllers plus
// cgroup2 without controllers). Create makes Root()/parent/name and keeps
// the new directory open: start the workload in it with
// syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()} (clone3 with
// CLONE_INTO_CGROUP), so that it never runs anywhere else, not even for an
// instant. Remove kills every process in the group and its descendants
// (cgroup.kill), waits for them to be gone and removes the directories.
//
// Every path below the hierarchy's root is opened component by component
// from a directory fd with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_XDEV): a symlink or a mount planted on the way is refused, and
// a path is never resolved twice.
package cgroup
