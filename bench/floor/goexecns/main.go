// Command goexecns runs /bin/true in a new user and mount namespace with
// os/exec, mapped as bpfgate maps a workload: the least a Go parent pays
// for what `unshare -Urm true` does.
package main

import (
	"os"
	"os/exec"
	"syscall"
)

func main() {
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: idmap,
		GidMappings: idmap,
	}
	if err := cmd.Run(); err != nil {
		os.Exit(1)
	}
}
