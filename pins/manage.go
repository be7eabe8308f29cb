package pins

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/sys"
)

// ErrPartial means a recursive unpin stopped half way; PartialError says
// what is left and where.
var ErrPartial = errors.New("tree only partly removed")

// PartialError reports a recursive removal that could not finish.
type PartialError struct {
	// Path is where the remaining entries are now.
	Path string
	// Removed and Left count entries (pins, symlinks, directories).
	Removed, Left int
	Err           error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%s: removed %d entries, %d left: %v", e.Path, e.Removed, e.Left, e.Err)
}

func (e *PartialError) Unwrap() []error { return []error{ErrPartial, e.Err} }

// PinOptions tune Pin.
type PinOptions struct {
	// Parents creates missing directories, like mkdir -p.
	Parents bool
}

// Pin pins the object behind fd (a map, program or link) at path.
func Pin(fd int, path string, opts PinOptions) error {
	d, l, err := openRoot(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Pin(fd, l.Rel, opts)
}

// Pin pins the object behind fd (a map, program or link) at name.
func (d *Dir) Pin(fd int, name string, opts PinOptions) error {
	rel, err := d.rel(name)
	if err != nil {
		return err
	}
	if err := d.notSelf(rel); err != nil {
		return err
	}
	var dirfd int
	if opts.Parents {
		dirfd, err = d.mkdirAll(filepath.Dir(rel))
	} else {
		dirfd, err = d.openDir(filepath.Dir(rel))
	}
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := sys.ObjPinAt(dirfd, filepath.Base(rel), fd); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("pin %s: %w; unpin it first or choose another name", d.show(rel), os.ErrExist)
		}
		return fmt.Errorf("pin %s: %w", d.show(rel), err)
	}
	return nil
}

// PinID pins the object of the given kind with the given kernel id at path.
func PinID(kind Kind, id uint32, path string, opts PinOptions) error {
	var (
		obj interface {
			FD() int
			Close() error
		}
		err error
	)
	switch kind {
	case KindMap:
		obj, err = ebpf.NewMapFromID(ebpf.MapID(id))
	case KindProgram:
		obj, err = ebpf.NewProgramFromID(ebpf.ProgramID(id))
	case KindLink:
		var l link.Link
		if l, err = link.NewFromID(link.ID(id)); err == nil {
			fl, ok := l.(interface {
				FD() int
				Close() error
			})
			if !ok {
				l.Close()
				return fmt.Errorf("link %d: no file descriptor", id)
			}
			obj = fl
		}
	default:
		return fmt.Errorf("unknown kind %q: want map, prog or link", kind)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %d: %w (bpftool %s show lists the ids)", kind, id, os.ErrNotExist, kindWord(kind))
		}
		return fmt.Errorf("%s %d: %w", kind, id, err)
	}
	defer obj.Close()
	return Pin(obj.FD(), path, opts)
}

func kindWord(k Kind) string {
	if k == KindProgram {
		return "prog"
	}
	return string(k)
}

// mkdirAll opens the directory rel, creating it and its parents, one
// element at a time from d's fd.
func (d *Dir) mkdirAll(rel string) (int, error) {
	fd, err := d.openDir(".")
	if err != nil || rel == "." {
		return fd, err
	}
	done := ""
	for _, elem := range strings.Split(rel, "/") {
		done = filepath.Join(done, elem)
		if err := unix.Mkdirat(fd, elem, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, fmt.Errorf("mkdir %s: %w", d.show(done), err)
		}
		next, err := unix.Openat2(fd, elem, &unix.OpenHow{
			Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC, Resolve: resolveFlags})
		unix.Close(fd)
		if err != nil {
			return -1, d.lookupError(done, err)
		}
		fd = next
	}
	return fd, nil
}

// MkdirAll creates the directory path and its parents on a bpffs.
func MkdirAll(path string) error {
	d, err := OpenDir(path, OpenOptions{Create: true})
	if err != nil {
		return err
	}
	return d.Close()
}

// MkdirAll creates the directory name and its parents.
func (d *Dir) MkdirAll(name string) error {
	rel, err := d.rel(name)
	if err != nil {
		return err
	}
	fd, err := d.mkdirAll(rel)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// UnpinOptions tune Unpin.
type UnpinOptions struct {
	// Recursive removes a directory and everything below it.
	Recursive bool
}

// Unpin removes the pin (or symlink) at path. Objects that nothing else
// holds are freed by the kernel; a link whose last reference goes detaches.
//
// With Recursive, a directory is first checked (every directory in it must
// be writable by the caller), then renamed out of sight in one step, then
// emptied. If the removal still fails half way, what is left is moved back
// to path and a *PartialError says what remains.
func Unpin(path string, opts UnpinOptions) error {
	d, l, err := openRoot(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if l.Rel == "." {
		return fmt.Errorf("%s: %w; unmount it instead", l.Path, ErrMountRoot)
	}
	return d.Unpin(l.Rel, opts)
}

// Unpin removes the pin, symlink or (with Recursive) tree at name, as the
// function Unpin does.
func (d *Dir) Unpin(name string, opts UnpinOptions) error {
	rel, err := d.rel(name)
	if err != nil {
		return err
	}
	if err := d.notSelf(rel); err != nil {
		return err
	}
	dirfd, err := d.openDir(filepath.Dir(rel))
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	base, shown := filepath.Base(rel), d.show(rel)
	st, err := lstatAt(dirfd, base)
	if err != nil {
		return d.lookupError(rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, base, 0); err != nil {
			return fmt.Errorf("unpin %s: %w", shown, err)
		}
		return nil
	}
	if !opts.Recursive {
		return fmt.Errorf("%s: %w; use -r to remove it and everything below it", shown, ErrIsDir)
	}
	return removeTree(dirfd, base, shown)
}

// removeTree removes the directory name in dirfd; shown is its path for
// messages.
func removeTree(dirfd int, name, shown string) error {
	total, err := checkTree(dirfd, name, shown)
	if err != nil {
		return fmt.Errorf("%w; nothing was removed", err)
	}
	// bpffs refuses names with a dot, so the name cannot be hidden; it is
	// unique and says what it is.
	hidden := fmt.Sprintf("unpinning-%s-%s", name, randomSuffix())
	if err := unix.Renameat2(dirfd, name, dirfd, hidden, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("unpin %s: %w; nothing was removed", shown, err)
	}
	removed, err := removeContents(dirfd, hidden)
	if err == nil {
		if err = unix.Unlinkat(dirfd, hidden, unix.AT_REMOVEDIR); err == nil {
			return nil
		}
	}
	where := filepath.Join(filepath.Dir(shown), hidden)
	if unix.Renameat2(dirfd, hidden, dirfd, name, unix.RENAME_NOREPLACE) == nil {
		where = shown
	}
	return &PartialError{Path: where, Removed: removed, Left: total + 1 - removed, Err: err}
}

// checkTree counts the entries below name and checks that each directory
// can be emptied by the caller.
func checkTree(dirfd int, name, shown string) (int, error) {
	if err := unix.Faccessat(dirfd, name, unix.W_OK|unix.X_OK, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, fmt.Errorf("cannot remove entries of %s: %w", shown, err)
	}
	names, fd, err := readDir(dirfd, name)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", shown, err)
	}
	defer unix.Close(fd)
	n := len(names)
	for _, child := range names {
		st, err := lstatAt(fd, child)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", filepath.Join(shown, child), err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			c, err := checkTree(fd, child, filepath.Join(shown, child))
			if err != nil {
				return 0, err
			}
			n += c
		}
	}
	return n, nil
}

// removeContents empties the directory name in dirfd, depth first, and
// returns how many entries it removed.
func removeContents(dirfd int, name string) (int, error) {
	names, fd, err := readDir(dirfd, name)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	removed := 0
	for _, child := range names {
		st, err := lstatAt(fd, child)
		if err != nil {
			return removed, err
		}
		flags := 0
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			n, err := removeContents(fd, child)
			removed += n
			if err != nil {
				return removed, err
			}
			flags = unix.AT_REMOVEDIR
		}
		if err := unix.Unlinkat(fd, child, flags); err != nil {
			return removed, fmt.Errorf("remove %s: %w", child, err)
		}
		removed++
	}
	return removed, nil
}

// readDir opens name in dirfd without following symlinks or crossing into
// another mount, and lists it. The returned fd stays open for *at calls on
// the entries.
func readDir(dirfd int, name string) ([]string, int, error) {
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return nil, -1, err
	}
	names, err := readNames(fd)
	if err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	return names, fd, nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RenameOptions tune Rename.
type RenameOptions struct {
	// Replace lets the rename replace an existing pin at the destination.
	Replace bool
	// Exchange swaps source and destination atomically; both must exist.
	Exchange bool
}

// Rename moves a pin or directory to another name on the same bpffs, in one
// atomic step. By default it refuses to replace an existing destination.
func Rename(src, dst string, opts RenameOptions) error {
	from, err := Locate(src)
	if err != nil {
		return err
	}
	to, err := Locate(dst)
	if err != nil {
		return err
	}
	if from.MountID != to.MountID {
		return fmt.Errorf("%s and %s: %w (%s, %s); pin the object again instead", from.Path, to.Path, ErrCrossMount, from.Mount, to.Mount)
	}
	if from.Rel == "." || to.Rel == "." {
		return fmt.Errorf("rename %s to %s: %w", from.Path, to.Path, ErrMountRoot)
	}
	fd, err := openMount(from)
	if err != nil {
		return err
	}
	d := &Dir{path: from.Mount, fd: fd, root: true}
	defer d.Close()
	return d.Rename(from.Rel, to.Rel, opts)
}

// Rename moves src to dst, both relative to d, as the function Rename does.
func (d *Dir) Rename(src, dst string, opts RenameOptions) error {
	srel, err := d.rel(src)
	if err != nil {
		return err
	}
	drel, err := d.rel(dst)
	if err != nil {
		return err
	}
	if err := d.notSelf(srel); err != nil {
		return err
	}
	if err := d.notSelf(drel); err != nil {
		return err
	}
	from, to := d.show(srel), d.show(drel)
	sfd, err := d.openDir(filepath.Dir(srel))
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	dfd, err := d.openDir(filepath.Dir(drel))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	flags := uint(unix.RENAME_NOREPLACE)
	switch {
	case opts.Exchange:
		flags = unix.RENAME_EXCHANGE
	case opts.Replace:
		flags = 0
	}
	err = unix.Renameat2(sfd, filepath.Base(srel), dfd, filepath.Base(drel), flags)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("rename %s: %s %w; use --force to replace it", from, to, os.ErrExist)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("rename %s to %s: %w", from, to, os.ErrNotExist)
	case errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("rename %s: %s is a directory that is not empty", from, to)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("rename %s to %s: %w", from, to, ErrCrossMount)
	}
	return fmt.Errorf("rename %s to %s: %w", from, to, err)
}
