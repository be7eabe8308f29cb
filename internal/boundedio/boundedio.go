package boundedio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

var (
	// ErrTooLarge means an input is larger than its limit. The error that
	// wraps it is a *TooLargeError, which names the input and the limit.
	ErrTooLarge = errors.New("input too large")
	// ErrNotRegular means a path names a FIFO, a device, a directory or a
	// socket where a regular file is expected.
	ErrNotRegular = errors.New("not a regular file")
	// ErrSymlink means a path the caller opened with NoFollow is a
	// symbolic link.
	ErrSymlink = errors.New("is a symbolic link, which is not followed here")
)

// TooLargeError says which input went over which limit.
type TooLargeError struct {
	// Name is the path, or a description of a stream.
	Name  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %s: refusing it", e.Name, FormatSize(e.Limit))
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// FormatSize prints a limit the way people write it: 1 MiB, 64 KiB, 100 bytes.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n == 1:
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

// Flag changes how Open opens a file.
type Flag int

const (
	// NoFollow refuses a path whose last component is a symbolic link
	// (O_NOFOLLOW): for files that their writer never makes a link.
	NoFollow Flag = 1 << iota
)

// Open opens path for reading, refuses it unless it is a regular file of
// at most limit bytes, and returns it with its size. It never blocks on a
// FIFO and never makes a terminal the caller's controlling one.
//
// The size is checked once, with fstat: read through Reader (or
// io.NewSectionReader(f, 0, size)) so that a file that grows afterwards is
// still read only up to the limit.
func Open(path string, limit int64, flags Flag) (*os.File, int64, error) {
	// O_NONBLOCK: opening a FIFO for reading waits for a writer otherwise.
	// It does not change how regular files are read.
	oflags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	if flags&NoFollow != 0 {
		oflags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, oflags, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, oflags, 0)
	}
	if err != nil {
		if err == unix.ELOOP && flags&NoFollow != 0 {
			if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
				return nil, 0, fmt.Errorf("%s %w: refusing it", path, ErrSymlink)
			}
		}
		return nil, 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, 0, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("%s is a %s: %w (give the path of a file)", path, describe(st.Mode), ErrNotRegular)
	}
	if st.Size > limit {
		unix.Close(fd)
		return nil, 0, &TooLargeError{Name: path, Limit: limit}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, 0, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), st.Size, nil
}

func describe(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "special file"
}

// ReadFile reads a regular file of at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	return ReadFileFlags(path, limit, 0)
}

// ReadFileFlags is ReadFile with Open's flags.
func ReadFileFlags(path string, limit int64, flags Flag) ([]byte, error) {
	f, size, err := Open(path, limit, flags)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One read more than the size tells EOF apart from a file that grew.
	buf := make([]byte, 0, size+1)
	return readAll(NewReader(f, limit, path), buf)
}

// ReadAll reads r to its end, or fails with a *TooLargeError naming name
// once more than limit bytes came.
func ReadAll(r io.Reader, limit int64, name string) ([]byte, error) {
	return readAll(NewReader(r, limit, name), nil)
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// NewReader returns a reader that reads r up to limit bytes and fails with
// a *TooLargeError naming name if r has more: unlike io.LimitReader, a cut
// input is an error, not a silent EOF. Use it for decoders that read a
// stream (json.Decoder) rather than a whole buffer.
func NewReader(r io.Reader, limit int64, name string) io.Reader {
	return &reader{r: r, left: limit, limit: limit, name: name}
}

type reader struct {
	r     io.Reader
	left  int64 // bytes still allowed
	limit int64
	name  string
	err   error
}

func (l *reader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Ask for one byte past the limit, so that an input of exactly limit
	// bytes reads fine and one more byte is an error.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n = int(l.left)
		l.err = &TooLargeError{Name: l.name, Limit: l.limit}
		err = l.err
	}
	l.left -= int64(n)
	return n, err
}
