package launch_test

// Attack tests of the sandbox around a workload (issue 9, problems 1 and 2):
// a workload must not reach host interfaces, host cgroups, other workloads'
// processes or host processes of its uid, and nothing it attaches may
// outlive it. Each test lets a hostile workload (sandbox_workload_test.go)
// try, and checks the kernel's view from the host afterwards.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// netSet delegates what attaching XDP, tcx and cgroup_skb programs takes.
func netSet(t *testing.T) delegate.Set {
	t.Helper()
	s, err := names(t).SetFlags("map_create:prog_load:btf_load:link_create:prog_attach:prog_detach", "hash:array",
		"xdp:sched_cls:cgroup_skb", "cgroup_inet_ingress:cgroup_inet_egress:xdp:tcx_ingress:tcx_egress")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func netConfig(t *testing.T) launch.Config {
	t.Helper()
	set := netSet(t)
	return launch.Config{Delegation: set, Caps: delegate.CapsFor(names(t), set)}
}

// running is a workload started with pipes for stdin and stdout, so that
// the test can read a report while it runs and then release it.
type running struct {
	name   string
	in     *os.File
	out    *json.Decoder
	stderr bytes.Buffer
	done   chan struct{}
	code   int
	err    error
}

// startWorkload starts the test binary as workload kind.
func startWorkload(t *testing.T, name string, cfg launch.Config, kind string, env ...string) *running {
	t.Helper()
	cfg.Args = []string{"/proc/self/exe"}
	cfg.Env = append(append(os.Environ(), workloadEnv+"="+kind), env...)
	return startRunning(t, name, cfg)
}

// startRunning starts cfg's command with pipes on its stdin and stdout; the
// test reads its reports and ends it by closing its stdin.
func startRunning(t *testing.T, name string, cfg launch.Config) *running {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &running{name: name, in: inW, out: json.NewDecoder(outR), done: make(chan struct{})}
	cfg.Stdin, cfg.Stdout, cfg.Stderr = inR, outW, &r.stderr
	w, err := launch.Start(cfg)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatalf("start workload %s: %v", name, err)
	}
	go func() {
		r.code, r.err = w.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Errorf("workload %s still runs 20s after its stdin was closed", name)
		}
		outR.Close()
	})
	return r
}

// read decodes the workload's next report, waiting at most 30 s.
func (r *running) read(t *testing.T, v any) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- r.out.Decode(v) }()
	select {
	case err := <-errc:
		if err != nil {
			<-r.done
			t.Fatalf("workload %s: no report (%v); exit code %d, %v\nstderr: %s", r.name, err, r.code, r.err, r.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("workload %s: no report within 30s\nstderr: %s", r.name, r.stderr.String())
	}
}

// wait releases the workload and waits for it to exit.
func (r *running) wait(t *testing.T) {
	t.Helper()
	r.in.Write([]byte("\n"))
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("workload %s did not exit within 30s", r.name)
	}
}

func randomMarker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// findHostPid finds the host pid of the workload that reported inner pid
// pid in pid namespace pidns and carries marker in its environment.
func findHostPid(t *testing.T, marker string, pidns uint64, pid int) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		host, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if !slices.Contains(strings.Split(string(env), "\x00"), markerEnv+"="+marker) {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/pid", &st) != nil || st.Ino != pidns {
			continue
		}
		status, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(pid) {
				return host
			}
		}
	}
	t.Fatalf("no host process with %s=%s is pid %d in pid namespace %d", markerEnv, marker, pid, pidns)
	return 0
}

// hostCgroup2 returns the mount point of the host's cgroup2 root (found
// as findmnt -t cgroup2 does) and its device and inode.
func hostCgroup2(t *testing.T) (string, [2]uint64) {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Root != "/" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(m.Mountpoint, &st); err != nil {
			t.Fatal(err)
		}
		return m.Mountpoint, [2]uint64{st.Dev, st.Ino}
	}
	testutil.Skip(t, "no cgroup2 mount of the root of the hierarchy")
	return "", [2]uint64{}
}

// ownCgroup returns the root of pid's cgroup namespace, relative to the
// host's cgroup2 root: where the cgroup2 mount on its /sys/fs/cgroup is
// rooted (mountinfo shows it relative to the reader's cgroup namespace).
// Without such a mount, its cgroup from /proc/PID/cgroup.
func ownCgroup(t *testing.T, pid int) string {
	t.Helper()
	cg := testutil.CgroupOf(t, strconv.Itoa(pid))
	ms, err := mountinfo.PidMountInfo(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.FSType == "cgroup2" && m.Mountpoint == "/sys/fs/cgroup" {
			if m.Root != cg && !strings.HasPrefix(cg, strings.TrimSuffix(m.Root, "/")+"/") {
				t.Errorf("the workload's /sys/fs/cgroup shows cgroup %s, which does not hold the workload's cgroup %s", m.Root, cg)
			}
			return m.Root
		}
	}
	t.Errorf("the workload has no cgroup2 mount on /sys/fs/cgroup (its cgroup is %s)", cg)
	return cg
}

// cgroupTree lists the cgroup2 directories at and below dir, depth levels
// down, by device and inode.
func cgroupTree(dir string, depth int) map[[2]uint64]string {
	out := map[[2]uint64]string{}
	var walk func(string, int)
	walk = func(p string, d int) {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil {
			return
		}
		out[[2]uint64{st.Dev, st.Ino}] = p
		if d == 0 {
			return
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() {
				walk(filepath.Join(p, e.Name()), d-1)
			}
		}
	}
	walk(dir, depth)
	return out
}

// attachedTo lists the ids of the programs attached to cgroup dir.
func attachedTo(t *testing.T, dir string, attach ebpf.AttachType) []uint32 {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Errorf("open %s: %v", dir, err)
		return nil
	}
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: attach})
	if err != nil {
		t.Errorf("query %s programs of %s: %v", attach, dir, err)
		return nil
	}
	var ids []uint32
	for _, p := range res.Programs {
		ids = append(ids, uint32(p.ID))
	}
	return ids
}

// progsAlive returns which of ids still name a program, after a bounded
// wait for the kernel to free them (programs go after an RCU grace period).
func progsAlive(ids []uint32) []uint32 {
	var alive []uint32
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		alive = alive[:0]
		for _, id := range ids {
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err == nil {
				p.Close()
				alive = append(alive, id)
			} else if !errors.Is(err, unix.ENOENT) {
				alive = append(alive, id)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
	}
}

// hostVeth creates a veth pair on the host and removes it after the test.
func hostVeth(t *testing.T) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.Skip(t, "no ip(8): "+err.Error())
	}
	suffix := randomMarker(t)[:6]
	name, peer := "bgta"+suffix, "bgtb"+suffix
	if out, err := exec.Command("ip", "link", "add", name, "type", "veth", "peer", "name", peer).CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v: %s", name, err, out)
		}
	})
	for _, n := range []string{name, peer} {
		if out, err := exec.Command("ip", "link", "set", n, "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set %s up: %v: %s", n, err, out)
		}
	}
	i, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return name, i.Index
}

// TestSandboxNetwork: a workload with a net delegation sees only lo (up),
// cannot attach XDP or tcx programs to a host interface, and leaves none
// attached there.
func TestSandboxNetwork(t *testing.T) {
	testutil.RequireRoot(t)
	veth, ifindex := hostVeth(t)
	r := startWorkload(t, "net", netConfig(t), "sandbox-net", ifindexEnv+"="+strconv.Itoa(ifindex))
	var rep netReport
	r.read(t, &rep)
	r.wait(t)
	t.Logf("workload report: %+v", rep)

	if len(rep.ProgIDs) != 2 {
		t.Fatalf("the workload could not load its XDP and sched_cls programs, so this test proves nothing: %v", rep.Errors)
	}
	if !slices.Equal(rep.Interfaces, []string{"lo up"}) {
		t.Errorf("the workload sees interfaces %q; want only lo, and up: it shares the host's network namespace or lo is down", rep.Interfaces)
	}
	for method, res := range rep.Attach {
		if res == "ok" {
			t.Errorf("the workload attached a program to host interface %s (ifindex %d) with %s", veth, ifindex, method)
		}
	}

	// The kernel's view after the workload exited: nothing on the veth.
	for _, attach := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: attach})
		if err != nil {
			t.Errorf("query %s programs of %s: %v", attach, veth, err)
			continue
		}
		for _, p := range res.Programs {
			t.Errorf("after the workload exited, host interface %s still runs %s program %d", veth, attach, p.ID)
		}
	}
	out, err := exec.Command("ip", "-d", "link", "show", "dev", veth).CombinedOutput()
	if err != nil {
		t.Errorf("ip -d link show %s: %v: %s", veth, err, out)
	}
	if strings.Contains(string(out), "prog/xdp") {
		t.Errorf("after the workload exited, host interface %s still runs an XDP program:\n%s", veth, out)
	}
	if alive := progsAlive(rep.ProgIDs); len(alive) > 0 {
		t.Errorf("programs %v that the workload loaded are still alive after it exited", alive)
	}
}

// TestSandboxCgroup: a workload that tries every way to the host's cgroup2
// tree attaches only inside its own cgroup, and nothing it attached
// outlives it.
func TestSandboxCgroup(t *testing.T) {
	testutil.RequireRoot(t)
	hostRoot, rootKey := hostCgroup2(t)
	before := attachedTo(t, hostRoot, ebpf.AttachCGroupInetEgress)

	// The programs are harmless (they pass every packet), but an escape
	// must not leave them on the host: detach whatever got through.
	var progIDs []uint32
	t.Cleanup(func() { detachFromHostTree(t, hostRoot, progIDs) })

	marker := randomMarker(t)
	r := startWorkload(t, "cgroup", netConfig(t), "sandbox-cgroup", markerEnv+"="+marker)
	var who cgroupReport
	r.read(t, &who)
	pid := findHostPid(t, marker, who.PidNS, who.Pid)

	// The workload's own cgroup, seen from the host before the attack: the
	// root of its cgroup namespace, which its /sys/fs/cgroup shows.
	own := ownCgroup(t, pid)
	mine := testutil.CgroupOf(t, "self")
	ownDir := filepath.Join(hostRoot, own)
	var subtree map[[2]uint64]string
	if own == mine || own == "/" {
		t.Errorf("the workload's cgroup is %s, the cgroup of the process that started it (%s): it has no cgroup of its own", own, mine)
	} else {
		subtree = cgroupTree(ownDir, 8)
	}

	r.in.Write([]byte("\n"))
	var rep cgroupReport
	r.read(t, &rep)
	progIDs = rep.ProgIDs
	t.Logf("workload report: %+v", rep)
	if len(rep.ProgIDs) != 2 {
		r.wait(t)
		t.Fatalf("the workload could not load its cgroup_skb programs, so this test proves nothing: %v", rep.Errors)
	}
	for _, d := range rep.Dirs {
		var how []string
		for method, res := range d.Attach {
			if res == "ok" {
				how = append(how, method)
			}
		}
		if len(how) == 0 {
			continue
		}
		slices.Sort(how)
		key := [2]uint64{d.Dev, d.Ino}
		switch {
		case key == rootKey:
			t.Errorf("the workload attached a cgroup_skb program (%s) to the host's root cgroup2 %s, which it opened as %s",
				strings.Join(how, ", "), hostRoot, d.Path)
		case subtree[key] == "":
			t.Errorf("the workload attached a cgroup_skb program (%s) to cgroup inode %d (%s inside), outside its own cgroup %s",
				strings.Join(how, ", "), d.Ino, d.Path, ownDir)
		}
	}
	r.wait(t)

	// The kernel's view after the workload exited.
	after := attachedTo(t, hostRoot, ebpf.AttachCGroupInetEgress)
	for _, id := range after {
		switch {
		case slices.Contains(rep.ProgIDs, id):
			t.Errorf("after the workload exited, the host's root cgroup2 %s still runs its program %d (attached with BPF_PROG_ATTACH)", hostRoot, id)
		case !slices.Contains(before, id):
			t.Logf("host root cgroup2 gained egress program %d during the test (not the workload's)", id)
		}
	}
	for key, dir := range cgroupTree(hostRoot, 3) {
		if key == rootKey {
			continue
		}
		for _, id := range attachedTo(t, dir, ebpf.AttachCGroupInetEgress) {
			if slices.Contains(rep.ProgIDs, id) {
				t.Errorf("after the workload exited, host cgroup %s still runs its program %d", dir, id)
			}
		}
	}
	if alive := progsAlive(rep.ProgIDs); len(alive) > 0 {
		t.Errorf("programs %v that the workload loaded are still alive after it exited", alive)
	}
}

// detachFromHostTree detaches the programs ids from every cgroup of the
// host's tree near its root, where an escaped workload left them.
func detachFromHostTree(t *testing.T, hostRoot string, ids []uint32) {
	for _, dir := range cgroupTree(hostRoot, 3) {
		attached := attachedTo(t, dir, ebpf.AttachCGroupInetEgress)
		for _, id := range ids {
			if !slices.Contains(attached, id) {
				continue
			}
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				t.Errorf("clean up program %d on %s: %v", id, dir, err)
				continue
			}
			f, err := os.Open(dir)
			if err == nil {
				err = link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(f.Fd()), Program: p, Attach: ebpf.AttachCGroupInetEgress})
				f.Close()
			}
			p.Close()
			if err != nil {
				t.Errorf("clean up program %d on %s: %v", id, dir, err)
			}
		}
	}
}

// idRange is a host id range of an id map.
type idRange struct{ start, end uint64 } // [start, end)

func hostRanges(t *testing.T, m string) []idRange {
	t.Helper()
	var out []idRange
	for _, line := range strings.Split(m, "; ") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("bad id map line %q", line)
		}
		host, err1 := strconv.ParseUint(f[1], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad id map line %q", line)
		}
		out = append(out, idRange{host, host + n})
	}
	return out
}

func overlap(a, b []idRange) bool {
	for _, x := range a {
		for _, y := range b {
			if x.start < y.end && y.start < x.end {
				return true
			}
		}
	}
	return false
}

// TestSandboxIDsAndProcesses: two concurrent workloads get disjoint host id
// ranges away from podman's documented 100000 range, see only their own
// processes, and cannot kill each other or a host process of their uid.
func TestSandboxIDsAndProcesses(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := launch.Config{Delegation: demoSet(t)}
	markers := []string{randomMarker(t), randomMarker(t)}
	ws := []*running{
		startWorkload(t, "A", cfg, "sandbox-procs", markerEnv+"="+markers[0]),
		startWorkload(t, "B", cfg, "sandbox-procs", markerEnv+"="+markers[1]),
	}
	reps := make([]procsReport, 2)
	hostPids := make([]int, 2)
	for i, w := range ws {
		w.read(t, &reps[i]) // both now wait on stdin: they run at the same time
		hostPids[i] = findHostPid(t, markers[i], reps[i].PidNS, reps[i].Pid)
	}
	podman := []idRange{{100000, 165536}}
	for _, kind := range []string{"uid", "gid"} {
		var ranges [2][]idRange
		var maps [2]string
		for i, rep := range reps {
			m := rep.UIDMap
			if kind == "gid" {
				m = rep.GIDMap
			}
			maps[i] = m
			ranges[i] = hostRanges(t, m)
			if overlap(ranges[i], podman) {
				t.Errorf("workload %s: %s map %q overlaps 100000-165535, the range podman's documented --uidmap and other tools use", ws[i].name, kind, m)
			}
		}
		if overlap(ranges[0], ranges[1]) {
			t.Errorf("concurrent workloads share host %ss: A maps %q, B maps %q", kind, maps[0], maps[1])
		}
	}
	for i, rep := range reps {
		var foreign []string
		for pid, cmdline := range rep.Procs {
			if pid != "1" && pid != strconv.Itoa(rep.Pid) {
				foreign = append(foreign, fmt.Sprintf("%s (%s)", pid, cmdline))
			}
		}
		if len(foreign) > 0 {
			slices.Sort(foreign)
			t.Errorf("workload %s (pid %d) sees %d processes besides pid 1 and itself, e.g. %s", ws[i].name, rep.Pid, len(foreign),
				strings.Join(foreign[:min(len(foreign), 5)], ", "))
		}
	}

	// A host process that runs as the host uid of A's root.
	uidA := hostRanges(t, reps[0].UIDMap)[0].start
	gidA := hostRanges(t, reps[0].GIDMap)[0].start
	victim := exec.Command("sleep", "60")
	victim.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uidA), Gid: uint32(gidA), NoSetGroups: true}}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	victimDone := make(chan struct{})
	go func() { victim.Wait(); close(victimDone) }()
	t.Cleanup(func() { victim.Process.Kill(); <-victimDone })

	// A tries to kill B and the victim by their host pids.
	targets := map[string]string{strconv.Itoa(hostPids[1]): "workload B", strconv.Itoa(victim.Process.Pid): "a host process of uid " + strconv.FormatUint(uidA, 10)}
	fmt.Fprintf(ws[0].in, "%d %d\n", hostPids[1], victim.Process.Pid)
	var after procsReport
	ws[0].read(t, &after)
	for pid, res := range after.Kill {
		if res == "ok" {
			t.Errorf("workload A killed %s (host pid %s)", targets[pid], pid)
		}
	}
	select {
	case <-victimDone:
		t.Errorf("the host process of uid %d (pid %d) died while workload A attacked it", uidA, victim.Process.Pid)
	case <-time.After(100 * time.Millisecond):
	}
	ws[1].wait(t)
	if ws[1].code != 0 {
		t.Errorf("workload B exited with %d (%v) after workload A attacked it\nstderr: %s", ws[1].code, ws[1].err, ws[1].stderr.String())
	}
	ws[0].wait(t)
}
