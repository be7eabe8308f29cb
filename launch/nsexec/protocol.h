/* The handshake between bpfgate's privileged Go side and its C helpers.
 * launch/nsexec/protocol.go holds the same values for Go; a test keeps the
 * two in step. */
#ifndef BPFGATE_PROTOCOL_H
#define BPFGATE_PROTOCOL_H

/* Environment of a re-executed helper. None of it reaches a workload. */
#define BPFGATE_ENV_MODE "_BPFGATE_CHILD"     /* "sandbox" or "enter" */
#define BPFGATE_ENV_NFDS "_BPFGATE_NFDS"      /* fds 3..3+N-1 pass to the workload */
#define BPFGATE_ENV_UIDMAP "_BPFGATE_UIDMAP"  /* uid_map text, lines "inside host count" */
#define BPFGATE_ENV_GIDMAP "_BPFGATE_GIDMAP"
#define BPFGATE_ENV_NET "_BPFGATE_NET"        /* "none" or "host" */
#define BPFGATE_ENV_TARGET "_BPFGATE_TARGET"  /* where the bpffs goes inside */
#define BPFGATE_ENV_CAPS "_BPFGATE_CAPS"      /* bounding set to keep, hex */
#define BPFGATE_ENV_CGNAME "_BPFGATE_CGNAME"  /* the cgroup's name in its parent */
#define BPFGATE_ENV_UNIX "_BPFGATE_UNIX"      /* "allow": the workload may make unix sockets */
#define BPFGATE_ENV_RECORD "_BPFGATE_RECORD"  /* "bpf": notify the host of the workload's bpf() calls */
#define BPFGATE_ENV_FAULT "BPFGATE_FAULT"     /* tests: SIGKILL self at this step */

#define BPFGATE_MODE_SANDBOX "sandbox"
#define BPFGATE_MODE_ENTER "enter"
#define BPFGATE_MODE_VERIFY "verify"
#define BPFGATE_RECORD_BPF "bpf" /* ENV_RECORD's value */

/* Messages. */
#define BPFGATE_MSG_CONTEXT "context" /* helper -> host, with the fs context fd */
#define BPFGATE_MSG_READY "ready"     /* host -> helper, with the verified detached mount */
#define BPFGATE_MSG_MOUNTED "mounted" /* helper -> host: attached */
#define BPFGATE_MSG_LISTENER "listener" /* sandbox -> host, with the seccomp listener fd (before exec) */
#define BPFGATE_MSG_EXEC "exec"       /* sandbox -> host: about to exec the workload */
#define BPFGATE_MSG_ERROR "error: "   /* either way, followed by the reason */

/* Sandbox mode: control fds follow the preserved ones, starting at 3+N. */
#define BPFGATE_SANDBOX_SOCK 0     /* handshake socket to the host side */
#define BPFGATE_SANDBOX_LIFE 1     /* read end of a pipe only the host side writes: EOF = it died */
#define BPFGATE_SANDBOX_CGPARENT 2 /* the directory the supervisor makes the workload's cgroup in */
#define BPFGATE_SANDBOX_LEASE 3    /* the id lease, held until cleanup is done */
#define BPFGATE_SANDBOX_NCTL 4

/* Enter mode: fixed fds. */
#define BPFGATE_ENTER_SOCK 3
#define BPFGATE_ENTER_PIDFD 4
#define BPFGATE_ENTER_DIR 5

/* Verify mode: is the bpffs mounted at VERIFY_MOUNT owned by the user
 * namespace VERIFY_USERNS? Exit status VERIFY_OWNED or VERIFY_FOREIGN. */
#define BPFGATE_VERIFY_USERNS 3
#define BPFGATE_VERIFY_MOUNT 4
#define BPFGATE_VERIFY_OWNED 0
#define BPFGATE_VERIFY_FOREIGN 1

/* Exit codes before the workload runs, as podman and runc use them. */
#define BPFGATE_EXIT_SETUP 125
#define BPFGATE_EXIT_NOEXEC 126
#define BPFGATE_EXIT_NOTFOUND 127

#endif
