package sys

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SendFD sends msg and one file descriptor over a unix socket.
func SendFD(sock int, msg []byte, fd int) error {
	oob := unix.UnixRights(fd)
	return unix.Sendmsg(sock, msg, oob, nil, 0)
}

// Recv reads one message from a SOCK_SEQPACKET socket, and the file
// descriptor that came with it, or -1. A closed peer gives an empty message.
// The received fd is close-on-exec.
func Recv(sock int, buf []byte) (msg []byte, fd int, err error) {
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, -1, err
		}
		fd = -1
		if oobn > 0 {
			cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return nil, -1, fmt.Errorf("parse control message: %w", err)
			}
			for _, c := range cmsgs {
				fds, err := unix.ParseUnixRights(&c)
				if err != nil {
					continue
				}
				for _, f := range fds {
					if fd == -1 {
						fd = f
					} else {
						unix.Close(f) // never keep more than we expect
					}
				}
			}
		}
		return buf[:n], fd, nil
	}
}
