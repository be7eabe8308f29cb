package launch_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// sockEnv names the unix socket the fd-passing workload sends its program to.
const sockEnv = "BPFGATE_TEST_SOCK"

// passProg is the workload side: it loads an XDP program with its token and
// sends the fd to whoever listens on the socket outside.
func passProg() any {
	res := map[string]string{}
	prog, _, err := loadProg(ebpf.XDP, ebpf.AttachXDP, 2)
	if err != nil {
		res["load"] = err.Error()
		return res
	}
	defer prog.Close()
	res["load"] = "ok"
	c, err := net.Dial("unix", os.Getenv(sockEnv))
	res["dial"] = outcome(err)
	if err != nil {
		return res
	}
	defer c.Close()
	_, _, err = c.(*net.UnixConn).WriteMsgUnix([]byte("prog"), unix.UnixRights(prog.FD()), nil)
	res["send"] = outcome(err)
	return res
}

// TestSandboxKeepsBPFObjectsIn: the kernel checks a token when a program is
// loaded, not when it is attached, so a workload that hands its XDP program
// to an unprivileged accomplice outside (over a unix socket in a shared
// directory) lets the accomplice attach it to a host interface. The sandbox
// allows no unix sockets but socketpair's unless asked to; asked to, the
// attack works, which shows the test would catch a sandbox without the
// filter.
func TestSandboxKeepsBPFObjectsIn(t *testing.T) {
	testutil.RequireRoot(t)
	ifname, _ := hostVeth(t)
	for _, allow := range []bool{false, true} {
		sock := filepath.Join(testutil.PublicDir(t), "accomplice.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sock, 0o777); err != nil {
			t.Fatal(err)
		}
		// The accomplice: an unprivileged local user that receives the fd
		// and attaches it to a host interface.
		attached := accomplice(ifname, func() (*ebpf.Program, error) {
			l.SetDeadline(time.Now().Add(10 * time.Second))
			c, err := l.AcceptUnix()
			if err != nil {
				return nil, fmt.Errorf("nothing came: %w", err)
			}
			defer c.Close()
			return progFrom(c.ReadMsgUnix)
		})
		set := demoSet(t)
		res := runJSON(t, launch.Config{Delegation: set, Caps: delegate.CapsFor(names(t), set), AllowUnixSockets: allow}, "pass-prog", sockEnv+"="+sock)
		if !allow {
			l.Close() // the accomplice waits for nothing
		}
		got := <-attached
		t.Logf("allow unix sockets %v: workload %v; accomplice: %s", allow, res, got)
		switch {
		case res["load"] != "ok":
			t.Errorf("the workload could not load its program: %v", res)
		case !allow && (res["dial"] == "ok" || got == "attached"):
			t.Errorf("the program left the sandbox: workload %v, accomplice %s", res, got)
		case !allow && !strings.Contains(res["dial"], "operation not permitted"):
			t.Errorf("dial: %s, want EPERM from the sandbox's filter", res["dial"])
		case allow && got != "attached":
			t.Errorf("with unix sockets allowed the attack should show (it is why they are not): accomplice %s", got)
		}
		l.Close()
	}
}

// accomplice plays an unprivileged local user outside the sandbox: on an
// OS thread of its own with nobody's credentials, it gets a program with get
// and attaches it to host interface ifname. It reports "attached", or what
// stopped it.
func accomplice(ifname string, get func() (*ebpf.Program, error)) <-chan string {
	out := make(chan string, 1)
	go func() {
		if err := testutil.DropToNobody(); err != nil {
			out <- "drop privileges: " + err.Error()
			return
		}
		prog, err := get()
		if err != nil {
			out <- err.Error()
			return
		}
		defer prog.Close()
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			out <- err.Error()
			return
		}
		lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index})
		if err != nil {
			out <- "attach refused: " + err.Error()
			return
		}
		lk.Close()
		out <- "attached"
	}()
	return out
}

// progFrom reads one message with read and makes a program of the one fd
// that came with it.
func progFrom(read func(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)) (*ebpf.Program, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := read(make([]byte, 16), oob)
	if err != nil {
		return nil, fmt.Errorf("nothing came: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("no fd came")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("no fd came")
	}
	prog, err := ebpf.NewProgramFromFD(fds[0])
	if err != nil {
		return nil, fmt.Errorf("not a program: %w", err)
	}
	return prog, nil
}
