package cgroup_test

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/bpfgate/bpfgate/cgroup"
)

// Run a command in a cgroup of its own, and remove the cgroup with
// everything the command left running in it. Needs root.
func ExampleCreate() {
	g, err := cgroup.Create("bpfgate", "example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	defer g.Remove(10 * time.Second)

	cmd := exec.Command("sh", "-c", "sleep 100 >/dev/null & echo started")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	if out, err := cmd.Output(); err == nil {
		fmt.Print(string(out))
	}
	// The background sleep still runs in the group; Remove kills it.
}
