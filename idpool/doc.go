// Package idpool hands out host id ranges to workloads, so that no two
// running workloads share a host uid or gid, and refuses id ranges that
// belong to accounts of the host.
//
// A Pool is a range of host ids cut into blocks (65536 ids each by default).
// Acquire leases a block that no live lease holds. Each block has a lock file
// in the pool's directory (/run/bpfgate/ids by default); a lease is that file,
// open and locked with flock(2). The kernel drops the lock when the last file
// descriptor for it is closed, so a lease ends when every process holding it
// has exited, however it exited (SIGKILL included), and nothing has to be
// cleaned up after a crash. A process that inherits the descriptor (see
// Lease.File) keeps the lease alive: pass it to whatever outlives the process
// that acquired it, for as long as the ids are in use.
//
// The default pool is what Default returns: the range /etc/subuid and
// /etc/subgid give to a user named "bpfgate" (as podman's --userns=auto does
// with "containers"), or else 0x70000000 up to (not including) 0x7FFE0000,
// ids that systemd documents as unused: above the container ranges of
// systemd-nspawn (524288-1879048191) and below systemd's foreign UID range
// (0x7FFE0000-0x7FFEFFFF).
//
// CheckHostRange refuses a host id range that contains an id below 1000 or
// an id listed in /etc/passwd (uids) or /etc/group (gids). It reads those
// files itself: it sees only local accounts, not LDAP or other NSS sources.
package idpool
