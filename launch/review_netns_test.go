package launch_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// netnsAttach opens the network namespace file named in its environment (a
// host path the sandbox's root still shows) and links sk_lookup and
// flow_dissector programs to it. BPF_LINK_CREATE for both takes a netns fd
// and checks nothing but the program.
func netnsAttach() map[string]string {
	res := map[string]string{}
	fd, err := unix.Open(os.Getenv("BPFGATE_REVIEW_NETNS"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	res["open"] = outcome(err)
	if err != nil {
		return res
	}
	defer unix.Close(fd)
	for _, c := range []struct {
		name   string
		typ    ebpf.ProgramType
		attach ebpf.AttachType
		ret    int32
	}{
		{"sk_lookup", ebpf.SkLookup, ebpf.AttachSkLookup, 0 /* SK_DROP */},
		{"flow_dissector", ebpf.FlowDissector, ebpf.AttachFlowDissector, 0},
	} {
		prog, _, err := loadProg(c.typ, c.attach, c.ret)
		if err != nil {
			res[c.name] = "load: " + err.Error()
			continue
		}
		l, err := link.AttachNetNs(fd, prog)
		res[c.name] = outcome(err)
		if err == nil {
			l.Close()
		}
		prog.Close()
	}
	return res
}

// TestReviewSandboxReachesHostNetns: the sandbox's root shows the host's
// /run, and with it every network namespace bind-mounted in /run/netns
// (ip netns, podman/netavark, CNI). Files there are world-readable, and
// BPF_LINK_CREATE for sk_lookup and flow_dissector accepts any netns fd:
// a workload of the built-in net profile links programs to network
// namespaces outside its sandbox (an sk_lookup program that drops every
// incoming connection of that namespace, here).
func TestReviewSandboxReachesHostNetns(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.Skip(t, "no ip(8): "+err.Error())
	}
	name := "bgrev" + randomMarker(t)[:6]
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })

	n := names(t)
	set, err := n.SetFlags("map_create:prog_load:btf_load:link_create", "hash", "sk_lookup:flow_dissector", "sk_lookup:flow_dissector")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cfg := launch.Config{Delegation: set, Caps: delegate.CapsFor(n, set)}
	cfg.Args = []string{"/proc/self/exe", "-test.run=^TestReviewPoCWorkload$"}
	cfg.Env = append(os.Environ(), reviewPoCEnv+"=netns-attach", "BPFGATE_REVIEW_NETNS=/run/netns/"+name)
	cfg.Stdout, cfg.Stderr = &stdout, &stderr
	code, err := launch.Run(cfg)
	if err != nil || code != 0 {
		t.Fatalf("workload: code %d, %v\nstderr: %s", code, err, stderr.String())
	}
	var res map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("workload: %v\nstdout: %s", err, stdout.String())
	}
	t.Logf("workload: %v", res)
	for _, k := range []string{"sk_lookup", "flow_dissector"} {
		if res[k] == "ok" {
			t.Errorf("the workload linked a %s program to network namespace %s outside its sandbox", k, name)
		}
	}
}
