package cgroup

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// OpenParent returns a new O_PATH descriptor of the group's parent
// directory, for a process that must remove the group after this one is
// gone (bpfgate's sandbox supervisor does).
func (g *Group) OpenParent() (*os.File, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fd, err := unix.FcntlInt(uintptr(g.parent), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: duplicate parent fd: %w", g.path, err)
	}
	return os.NewFile(uintptr(fd), filepath.Dir(g.path)), nil
}
