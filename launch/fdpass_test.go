package launch_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		attached := make(chan string, 1)
		go func() {
			if err := testutil.DropToNobody(); err != nil {
				attached <- "drop privileges: " + err.Error()
				return
			}
			l.SetDeadline(time.Now().Add(10 * time.Second))
			c, err := l.AcceptUnix()
			if err != nil {
				attached <- "nothing came: " + err.Error()
				return
			}
			defer c.Close()
			oob := make([]byte, unix.CmsgSpace(4))
			_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 16), oob)
			msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || perr != nil || len(msgs) != 1 {
				attached <- "no fd came"
				return
			}
			fds, err := unix.ParseUnixRights(&msgs[0])
			if err != nil || len(fds) != 1 {
				attached <- "no fd came"
				return
			}
			prog, err := ebpf.NewProgramFromFD(fds[0])
			if err != nil {
				attached <- "not a program: " + err.Error()
				return
			}
			defer prog.Close()
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				attached <- err.Error()
				return
			}
			lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index})
			if err != nil {
				attached <- "attach refused: " + err.Error()
				return
			}
			lk.Close()
			attached <- "attached"
		}()
		set := demoSet(t)
		res := runJSON(t, launch.Config{Delegation: set, Caps: launch.CapsFor(names(t), set), AllowUnixSockets: allow}, "pass-prog", sockEnv+"="+sock)
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
