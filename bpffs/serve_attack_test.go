package bpffs_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// peerLog is what the workload side of a handshake got from the host.
type peerLog struct {
	msgs []string
	fds  int
	// mounted is set when the host said "ready" to a context that was not
	// a bpffs and the peer could fsmount it: host root created a
	// filesystem of the peer's choosing.
	mounted string
}

// handshakeAgainst runs serve with the test as the workload side of the
// handshake: it sends what send sends (and the context fd ctx it made, or
// -1), then listens as a hostile workload would: on "ready" it fsmounts its
// own context (detached: nothing is attached anywhere) and says "mounted".
// serve must return within a bound.
// send runs in t's goroutine and is given t, so that its failures are t's
// (a subtest's, not its parent's).
func handshakeAgainst(t *testing.T, serve func(sock int) error, send func(t *testing.T, sock int) (ctx int)) (error, peerLog) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	host, peer := fds[0], fds[1]
	defer unix.Close(peer)
	ctx := send(t, peer)
	if ctx >= 0 {
		defer unix.Close(ctx)
	}
	logc := make(chan peerLog, 1)
	go func() {
		var log peerLog
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(8*4))
		for {
			n, oobn, _, _, err := unix.Recvmsg(peer, buf, oob, unix.MSG_CMSG_CLOEXEC)
			if err == unix.EINTR {
				continue
			}
			if err != nil || (n == 0 && oobn == 0) {
				break
			}
			log.msgs = append(log.msgs, string(buf[:n]))
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, c := range cmsgs {
					got, _ := unix.ParseUnixRights(&c)
					for _, fd := range got {
						log.fds++
						unix.Close(fd)
					}
				}
			}
			if string(buf[:n]) == "ready" && ctx >= 0 {
				log.mounted = fsmountKind(ctx)
				_ = unix.Sendmsg(peer, []byte("mounted"), nil, nil, 0)
			}
		}
		logc <- log
	}()
	errc := make(chan error, 1)
	go func() { errc <- serve(host) }()
	select {
	case err = <-errc:
	case <-time.After(2*bpffs.HandshakeTimeout + 5*time.Second):
		t.Fatalf("the privileged side of the handshake did not return")
	}
	unix.Close(host) // the peer sees EOF
	return err, <-logc
}

// fsmountKind fsmounts a created context and says what filesystem it is.
func fsmountKind(ctx int) string {
	mfd, err := unix.Fsmount(ctx, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(mfd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(mfd, &st); err != nil {
		return "?"
	}
	switch st.Type {
	case unix.BPF_FS_MAGIC:
		return "bpf"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	}
	return fmt.Sprintf("filesystem with magic %#x", st.Type)
}

func fsopen(t *testing.T, fstype string) int {
	t.Helper()
	fd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Fatalf("fsopen %s: %v", fstype, err)
	}
	return fd
}

func sendMsg(t *testing.T, sock int, msg string, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(sock, []byte(msg), oob, nil, 0); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
}

// sendContext sends "context" with a new fs context of type fstype.
func sendContext(fstype string) func(*testing.T, int) int {
	return func(t *testing.T, sock int) int {
		ctx := fsopen(t, fstype)
		sendMsg(t, sock, "context", ctx)
		return ctx
	}
}

func demoOptions(t *testing.T) bpffs.Options {
	t.Helper()
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	set, err := names.SetFlags("map_create:prog_load:btf_load", "hash:array", "socket_filter:xdp", "cgroup_inet_ingress:xdp")
	if err != nil {
		t.Fatal(err)
	}
	return bpffs.Options{Delegation: set}
}

// shortHandshake makes the privileged side give up quickly: these peers
// never finish the handshake.
func shortHandshake(t *testing.T) {
	old := bpffs.HandshakeTimeout
	bpffs.HandshakeTimeout = 500 * time.Millisecond
	t.Cleanup(func() { bpffs.HandshakeTimeout = old })
}

// maxErrorLen bounds an error that quotes what a peer sent.
const maxErrorLen = 1024

// refused checks that the host refused at once: an error (wrapping want, if
// set), never a "ready", never an fd, nothing created for the peer.
func refused(t *testing.T, err error, log peerLog, want error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("the privileged side accepted it")
	case want != nil && !errors.Is(err, want):
		t.Errorf("got %v, want %v", err, want)
	case errors.Is(err, bpffs.ErrTimeout):
		t.Errorf("the privileged side waited for more instead of refusing what it got: %v", err)
	default:
		t.Logf("refused: %.200q", err.Error())
	}
	// What the peer wrote ends up in the host's logs and terminal.
	if err != nil {
		if msg := err.Error(); len(msg) > maxErrorLen || strings.ContainsFunc(msg, unicode.IsControl) {
			t.Errorf("the error passes on what the peer wrote unchecked (%d bytes, at most %d without control characters wanted): %.200q", len(msg), maxErrorLen, msg)
		}
	}
	for _, m := range log.msgs {
		if m == "ready" {
			t.Errorf("the peer was told %q", m)
		}
	}
	if log.fds > 0 {
		t.Errorf("the peer received %d fds", log.fds)
	}
	if log.mounted != "" {
		t.Errorf("host root created a %s for the peer, which fsmounted it", log.mounted)
	}
}

// TestServeDelegationRefusesHostilePeers plays a hostile workload side of
// the handshake against ServeDelegation: a context that is not a bpffs (a
// ramfs, which silently takes delegate_* options; a pipe), and messages the
// protocol does not allow. Each must be refused at once, with nothing
// created or sent to the peer and every received fd closed.
func TestServeDelegationRefusesHostilePeers(t *testing.T) {
	testutil.RequireRoot(t)
	shortHandshake(t)
	opts := demoOptions(t)
	for _, tc := range []struct {
		name string
		send func(t *testing.T, sock int) (ctx int)
		want error
	}{
		{name: "ramfs context", send: sendContext("ramfs"), want: bpffs.ErrNotBPFFS},
		{name: "tmpfs context", send: sendContext("tmpfs"), want: bpffs.ErrNotBPFFS},
		// A disk filesystem's superblock must not even be created: the
		// peer could have set its source to any host device.
		{name: "ext4 context", send: sendContext("ext4"), want: bpffs.ErrNotBPFFS},
		{name: "pipe", want: bpffs.ErrNotBPFFS, send: func(t *testing.T, sock int) int {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			defer unix.Close(p[0])
			defer unix.Close(p[1])
			sendMsg(t, sock, "context", p[0])
			return -1
		}},
		{name: "garbage", send: func(t *testing.T, sock int) int {
			sendMsg(t, sock, "hello")
			return -1
		}},
		{name: "long garbage", send: func(t *testing.T, sock int) int {
			sendMsg(t, sock, strings.Repeat("x", 64<<10))
			return -1
		}},
		{name: "peer error with control characters", send: func(t *testing.T, sock int) int {
			sendMsg(t, sock, "error: \x1b[2J\x1b[Hall fine\nbpfgate: mounted")
			return -1
		}},
		{name: "context without fd", send: func(t *testing.T, sock int) int {
			sendMsg(t, sock, "context")
			return -1
		}},
		{name: "garbage with a bpffs context", send: func(t *testing.T, sock int) int {
			ctx := fsopen(t, "bpf")
			sendMsg(t, sock, "hello", ctx)
			return ctx
		}},
		{name: "two bpffs contexts", send: func(t *testing.T, sock int) int {
			a, b := fsopen(t, "bpf"), fsopen(t, "bpf")
			defer unix.Close(b)
			sendMsg(t, sock, "context", a, b)
			return a
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countFDs(t)
			err, log := handshakeAgainst(t, func(sock int) error {
				return onFile(t, sock, func(f *os.File) error { return bpffs.ServeDelegation(f, opts) })
			}, tc.send)
			refused(t, err, log, tc.want)
			if after := countFDs(t); after != before {
				t.Errorf("%d fds open before, %d after", before, after)
			}
		})
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}
