package bpffs_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// peerEnv makes the test binary the workload half of a handshake, on fd 3,
// attaching at the directory the variable names. It is started in user and
// mount namespaces of its own.
const peerEnv = "BPFFS_TEST_WORKLOAD_HALF"

func init() {
	dir := os.Getenv(peerEnv)
	if dir == "" {
		return
	}
	if err := workloadSide(3, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workloadSide is the helper's half of the handshake, written plainly for
// the test: the real one is C (launch/nsexec).
func workloadSide(sock int, dir string) error {
	ctx, err := unix.Fsopen("bpf", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	if err := unix.Sendmsg(sock, []byte("context"), unix.UnixRights(ctx), nil, 0); err != nil {
		return err
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ready" || oobn == 0 {
		return fmt.Errorf("refused: %q", buf[:n])
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return fmt.Errorf("no mount fd: %v", err)
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("no mount fd: %v", err)
	}
	if err := unix.MoveMount(fds[0], "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return err
	}
	return unix.Sendmsg(sock, []byte("mounted"), nil, nil, 0)
}

// workloadHalf starts the real workload half in a user namespace of its
// own (root there is host uid hostID) and returns the host's end of the
// socket and that namespace.
func workloadHalf(t *testing.T, hostID int) (host int, ns *os.File, wait func() error) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), peerEnv+"="+testutil.PublicDir(t))
	cmd.ExtraFiles = []*os.File{peer}
	cmd.Stderr = os.Stderr
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 1}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
		UidMappings: idmap,
		GidMappings: idmap,
	}
	if err := cmd.Start(); err != nil {
		unix.Close(fds[0])
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ns, err = os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return fds[0], ns, cmd.Wait
}

// otherUserNS returns a user namespace that is not bpfgate's: that of a
// short-lived child, kept alive by the returned file.
func otherUserNS(t *testing.T) *os.File {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 4243, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 4243, Size: 1}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	ns, err := os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// TestServeDelegationToChecksOwner: the privileged side knows which user
// namespace the bpffs is for. It accepts the context that the workload half
// made there, and refuses one that another namespace made: host root's own
// (the initial user namespace), or a genuine workload's bpffs meant for a
// different namespace (one container passing its context off as another's).
// A context that is not a bpffs is refused as well.
func TestServeDelegationToChecksOwner(t *testing.T) {
	testutil.RequireRoot(t)
	opts := demoOptions(t)

	t.Run("the owner's own context", func(t *testing.T) {
		host, ns, wait := workloadHalf(t, 4244)
		defer unix.Close(host)
		if err := onFile(t, host, func(f *os.File) error { return bpffs.ServeDelegationTo(f, opts, ns) }); err != nil {
			t.Fatalf("refused the context of the namespace it was asked to serve: %v", err)
		}
		if err := wait(); err != nil {
			t.Errorf("workload half: %v", err)
		}
	})

	t.Run("a workload's context meant for another namespace", func(t *testing.T) {
		shortHandshake(t)
		before := countFDs(t)
		host, _, wait := workloadHalf(t, 4245)
		err := onFile(t, host, func(f *os.File) error { return bpffs.ServeDelegationTo(f, opts, otherUserNS(t)) })
		unix.Close(host)
		if !errors.Is(err, bpffs.ErrWrongOwner) {
			t.Errorf("got %v, want ErrWrongOwner", err)
		}
		done := make(chan error, 1)
		go func() { done <- wait() }()
		select {
		case werr := <-done:
			if werr == nil {
				t.Errorf("the workload half mounted the bpffs although it was refused")
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the workload half is still waiting after the refusal")
		}
		if after := countFDs(t); after != before+2 { // the two namespace files, closed at cleanup
			t.Errorf("%d fds open before, %d after", before, after)
		}
	})

	shortHandshake(t)
	owner := otherUserNS(t)
	for _, tc := range []struct {
		name   string
		fstype string
		want   error
	}{
		{"bpffs of the initial user namespace", "bpf", bpffs.ErrWrongOwner},
		{"ramfs", "ramfs", bpffs.ErrNotBPFFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countFDs(t)
			err, log := handshakeAgainst(t, func(sock int) error {
				return onFile(t, sock, func(f *os.File) error { return bpffs.ServeDelegationTo(f, opts, owner) })
			}, sendContext(tc.fstype))
			refused(t, err, log, tc.want)
			if after := countFDs(t); after != before {
				t.Errorf("%d fds open before, %d after", before, after)
			}
		})
	}
}
