package idpool_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/bpfgate/bpfgate/idpool"
)

// Lease a block of host ids and map a new user namespace onto it. Pass
// lease.File() to whatever outlives this process for as long as the
// workload runs.
func ExamplePool_Acquire() {
	dir, err := os.MkdirTemp("", "idpool-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	// idpool.Default() gives the host's pool; this one has four blocks.
	pool := idpool.Pool{Start: 0x70000000, Size: 4 * idpool.DefaultBlock, Dir: filepath.Join(dir, "ids")}
	lease, err := pool.Acquire()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lease.Release()

	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: lease.IDMap(),
		GidMappings: lease.IDMap(),
	}
	fmt.Println(lease.Size(), "ids, inside the pool:", lease.Base()-pool.Start < pool.Size)
	// Output: 65536 ids, inside the pool: true
}

// Refuse a map that reaches host root and the other system accounts.
func ExampleCheckHostRange() {
	err := idpool.CheckHostRange(idpool.UID, 0, 65536)
	fmt.Println(errors.Is(err, idpool.ErrSystemID))
	// Output: true
}
