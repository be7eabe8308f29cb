package sys

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// maxRecvFDs is how many fds RecvFDs makes room for. A peer that sends
// more gets its message truncated, and ErrTooManyFDs.
const maxRecvFDs = 8

// SendFD sends msg and one file descriptor over a unix socket.
func SendFD(sock int, msg []byte, fd int) error {
	oob := unix.UnixRights(fd)
	return unix.Sendmsg(sock, msg, oob, nil, 0)
}

// Recv reads one message from a SOCK_SEQPACKET socket, and the file
// descriptor that came with it, or -1. A closed peer gives an empty message.
// The received fd is close-on-exec; any further fds are closed.
func Recv(sock int, buf []byte) (msg []byte, fd int, err error) {
	msg, fds, err := RecvFDs(sock, buf)
	if err != nil {
		return nil, -1, err
	}
	fd = -1
	for i, f := range fds {
		if i == 0 {
			fd = f
		} else {
			unix.Close(f) // never keep more than we expect
		}
	}
	return msg, fd, nil
}

// RecvFDs reads one message and every fd that came with it (close-on-exec).
// A message or control data the buffers could not hold is an error, and
// whatever fds did arrive are closed.
func RecvFDs(sock int, buf []byte) (msg []byte, fds []int, err error) {
	oob := make([]byte, unix.CmsgSpace(4*maxRecvFDs))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if oobn > 0 {
			cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return nil, nil, fmt.Errorf("parse control message: %w", err)
			}
			for _, c := range cmsgs {
				got, err := unix.ParseUnixRights(&c)
				if err == nil {
					fds = append(fds, got...)
				}
			}
		}
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			for _, f := range fds {
				unix.Close(f)
			}
			return nil, nil, fmt.Errorf("the peer sent a message larger than %d bytes or more than %d fds", len(buf), maxRecvFDs)
		}
		return buf[:n], fds, nil
	}
}

// SameFile reports whether f and the file at path are one inode (two views
// of one namespace, say).
func SameFile(f *os.File, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if err := unix.Stat(path, &b); err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}
