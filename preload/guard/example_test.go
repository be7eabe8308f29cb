package guard_test

import (
	"errors"
	"fmt"

	"github.com/bpfgate/bpfgate/preload/guard"
)

// Enable the guard of the preload tree, or find out why it cannot be.
func Example() {
	st, err := guard.Enable(guard.Options{Root: "/sys/fs/bpf/bpfgate"})
	switch {
	case errors.Is(err, guard.ErrUnsupported):
		fmt.Println("this kernel cannot run the guard:", err)
	case errors.Is(err, guard.ErrEnabled):
		fmt.Println("already on")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Printf("guarding %s (bpffs %s, inode %d), manager %s\n", st.Root, st.Dev, st.Inode, st.Manager)
	}
}
