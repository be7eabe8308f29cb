package launch

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
)

// Environment of the re-executed workload half. None of it reaches the
// workload: the child removes it before exec.
const (
	childEnv  = "_BPFGATE_CHILD" // "run" or "mount"
	targetEnv = "_BPFGATE_TARGET"
	capsEnv   = "_BPFGATE_CAPS"
)

// msgExec tells the host the child is about to exec the workload.
const msgExec = "exec"

// File descriptors the child inherits.
const (
	childSockFD   = 3
	childTargetFD = 4
	childExeFD    = 5 // MountInto: the executable itself
)

// Exit codes of the child when it fails before the workload runs, as
// podman and runc use them.
const (
	exitSetup    = 125
	exitNoExec   = 126
	exitNotFound = 127
)

// Init turns the process into the workload half of a handshake if it was
// started as one, and never returns in that case. Otherwise it returns at
// once. Call it first thing in main.
func Init() {
	mode, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	// Capabilities and namespaces belong to threads: keep everything on the
	// thread that will exec.
	runtime.LockOSThread()
	// exec.Cmd hands over extra files without close-on-exec; the workload
	// must not inherit the handshake socket.
	unix.CloseOnExec(childSockFD)
	switch mode {
	case "run":
		os.Exit(childRun())
	case "mount":
		os.Exit(childMount())
	}
	fmt.Fprintf(os.Stderr, "bpfgate: unknown child mode %q\n", mode)
	os.Exit(exitSetup)
}

func childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "_BPFGATE_") || strings.HasPrefix(kv, bpffs.FaultEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func report(format string, args ...any) {
	_ = unix.Sendmsg(childSockFD, []byte("error: "+fmt.Sprintf(format, args...)), nil, nil, 0)
}

func childRun() int {
	target := os.Getenv(targetEnv)
	keep, err := strconv.ParseUint(os.Getenv(capsEnv), 16, 64)
	if err != nil {
		report("bad capability mask %q", os.Getenv(capsEnv))
		return exitSetup
	}
	if len(os.Args) < 2 {
		report("no command to run")
		return exitSetup
	}
	if err := bpffs.MountDelegated(childSockFD, target, -1); err != nil {
		return exitSetup // the host side has the error
	}
	env := childEnviron()
	path, err := lookPath(os.Args[1], env)
	if err != nil {
		report("%v", err)
		return exitNotFound
	}
	if err := limitBoundingSet(keep); err != nil {
		report("%v", err)
		return exitSetup
	}
	faultAt("exec")
	// Announce the exec: the host then takes EOF on the socket (closed by
	// the exec) as success, and an error message as failure.
	_ = unix.Sendmsg(childSockFD, []byte(msgExec), nil, nil, 0)
	err = syscall.Exec(path, os.Args[1:], env)
	report("exec %s: %v%s", path, err, accessHint(err))
	return exitNoExec
}

// lookPath resolves a command with the workload's PATH.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			os.Setenv("PATH", p)
		}
	}
	path, err := exec.LookPath(file)
	if err != nil {
		return "", fmt.Errorf("command %q not found in the workload's PATH", file)
	}
	return path, nil
}

func accessHint(err error) string {
	if err == syscall.EACCES {
		return " (the workload runs as an unprivileged host uid: the program and every directory above it must be readable and searchable by others, e.g. install it under /usr/local/bin)"
	}
	return ""
}

func childMount() int {
	unix.Close(childExeFD)
	if err := bpffs.MountDelegated(childSockFD, os.Getenv(targetEnv), childTargetFD); err != nil {
		return exitSetup
	}
	return 0
}

func faultAt(step string) {
	if os.Getenv(bpffs.FaultEnv) == step {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
}
