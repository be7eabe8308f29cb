package launch_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// reviewPoCEnv makes TestReviewPoCWorkload act as a workload; the test
// binary runs it through -test.run, so no change to TestMain is needed.
const reviewPoCEnv = "BPFGATE_REVIEW_POC"

// TestReviewPoCWorkload is not a test: it is the workload side of the
// review's proofs of concept, run inside the sandbox.
func TestReviewPoCWorkload(t *testing.T) {
	kind := os.Getenv(reviewPoCEnv)
	if kind == "" {
		return // only runs as a workload of the review's PoC tests
	}
	var out any
	switch kind {
	case "dgram-pass-prog":
		out = dgramPassProg()
	case "netns-attach":
		out = netnsAttach()
	case "pin-out":
		out = pinOut()
	}
	json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(0)
}

// dgramPassProg loads an XDP program with the workload's token and sends
// its fd out of the sandbox without socket(AF_UNIX): a SOCK_DGRAM
// socketpair, which the filter allows, can sendto() any bound datagram
// socket by path, and the host's /tmp is shared.
func dgramPassProg() map[string]string {
	res := map[string]string{}
	prog, _, err := loadProg(ebpf.XDP, ebpf.AttachXDP, 2)
	if err != nil {
		res["load"] = err.Error()
		return res
	}
	defer prog.Close()
	res["load"] = "ok"
	_, err = unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	res["socket"] = outcome(err)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	res["socketpair"] = outcome(err)
	if err != nil {
		return res
	}
	err = unix.Sendmsg(pair[0], []byte("prog"), unix.UnixRights(prog.FD()), &unix.SockaddrUnix{Name: os.Getenv(sockEnv)}, 0)
	res["send"] = outcome(err)
	return res
}

// TestReviewDgramSocketpairEscapesFilter: the sandbox's seccomp filter
// refuses socket(AF_UNIX) but allows every socketpair(), and a SOCK_DGRAM
// socketpair end can sendto() a datagram socket bound anywhere in the
// shared filesystem. An unprivileged accomplice outside receives the
// workload's XDP program and attaches it to a host interface: the attack
// TestSandboxKeepsBPFObjectsIn says is closed.
func TestReviewDgramSocketpairEscapesFilter(t *testing.T) {
	testutil.RequireRoot(t)
	ifname, _ := hostVeth(t)
	sock := filepath.Join(testutil.PublicDir(t), "accomplice.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	attached := accomplice(ifname, func() (*ebpf.Program, error) {
		l.SetDeadline(time.Now().Add(15 * time.Second))
		return progFrom(l.ReadMsgUnix)
	})
	set := demoSet(t)
	cfg := launch.Config{Delegation: set, Caps: delegate.CapsFor(names(t), set)}
	var res map[string]string
	{
		var stdout, stderr bytes.Buffer
		cfg.Args = []string{"/proc/self/exe", "-test.run=^TestReviewPoCWorkload$"}
		cfg.Env = append(os.Environ(), reviewPoCEnv+"=dgram-pass-prog", sockEnv+"="+sock)
		cfg.Stdout, cfg.Stderr = &stdout, &stderr
		code, err := launch.Run(cfg)
		if err != nil || code != 0 {
			t.Fatalf("workload: code %d, %v\nstderr: %s", code, err, stderr.String())
		}
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("workload: %v\nstdout: %s", err, stdout.String())
		}
	}
	if res["send"] != "ok" {
		l.Close()
	}
	got := <-attached
	t.Logf("workload %v; accomplice: %s", res, got)
	if res["load"] != "ok" {
		t.Fatalf("the workload could not load its program: %v", res)
	}
	if res["socket"] == "ok" {
		t.Fatalf("socket(AF_UNIX) is allowed: the filter is off, this test proves nothing")
	}
	if res["send"] == "ok" || got == "attached" {
		t.Errorf("the workload's XDP program left the sandbox through a SOCK_DGRAM socketpair (send %s); the accomplice: %s", res["send"], got)
	}
}
