package launch_test

// The hostile workloads of the sandbox tests: each tries to reach past the
// namespaces bpfgate run gives it and reports what worked, so that the test
// (on the host side) can check the report against the kernel's own view.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Environment the sandbox tests pass to their workloads.
const (
	ifindexEnv = "BPFGATE_TEST_IFINDEX" // a host interface to attack
	markerEnv  = "BPFGATE_TEST_MARKER"  // lets the test find the workload's host pid
)

// outcome names the result of an attempt: "ok" or the error.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// loadProg loads a program that returns ret and reports its id. The
// workload's token comes from its bpffs, found by cilium/ebpf itself.
func loadProg(typ ebpf.ProgramType, attach ebpf.AttachType, ret int32) (*ebpf.Program, uint32, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: typ, AttachType: attach, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
	if err != nil {
		return nil, 0, err
	}
	info, err := p.Info()
	if err != nil {
		p.Close()
		return nil, 0, fmt.Errorf("program info: %w", err)
	}
	id, _ := info.ID()
	return p, uint32(id), nil
}

// netReport is what the network workload found.
type netReport struct {
	Interfaces []string          `json:"interfaces"` // "name up" or "name down"
	Attach     map[string]string `json:"attach"`     // method: outcome
	ProgIDs    []uint32          `json:"prog_ids"`
	Errors     []string          `json:"errors,omitempty"`
}

// netAttack lists its interfaces and attaches XDP and tcx programs, by link
// and by BPF_PROG_ATTACH (which outlives the process), to the host
// interface whose index is in ifindexEnv.
func netAttack() any {
	rep := netReport{Attach: map[string]string{}}
	ifs, err := net.Interfaces()
	if err != nil {
		rep.Errors = append(rep.Errors, "interfaces: "+err.Error())
	}
	for _, i := range ifs {
		state := "down"
		if i.Flags&net.FlagUp != 0 {
			state = "up"
		}
		rep.Interfaces = append(rep.Interfaces, i.Name+" "+state)
	}
	ifindex, err := strconv.Atoi(os.Getenv(ifindexEnv))
	if err != nil {
		rep.Errors = append(rep.Errors, "no host ifindex given")
		return rep
	}
	var keep []any                                        // links stay attached until the workload exits
	xdp, id, err := loadProg(ebpf.XDP, ebpf.AttachXDP, 2) // XDP_PASS
	if err != nil {
		rep.Errors = append(rep.Errors, "load xdp: "+err.Error())
	} else {
		rep.ProgIDs = append(rep.ProgIDs, id)
		l, err := link.AttachXDP(link.XDPOptions{Program: xdp, Interface: ifindex})
		rep.Attach["xdp link"] = outcome(err)
		keep = append(keep, l, xdp)
	}
	tc, id, err := loadProg(ebpf.SchedCLS, ebpf.AttachNone, -1) // TCX_NEXT
	if err != nil {
		rep.Errors = append(rep.Errors, "load sched_cls: "+err.Error())
	} else {
		rep.ProgIDs = append(rep.ProgIDs, id)
		l, err := link.AttachTCX(link.TCXOptions{Program: tc, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
		rep.Attach["tcx ingress link"] = outcome(err)
		err = link.RawAttachProgram(link.RawAttachProgramOptions{Target: ifindex, Program: tc, Attach: ebpf.AttachTCXEgress})
		rep.Attach["tcx egress prog_attach"] = outcome(err)
		keep = append(keep, l, tc)
	}
	_ = keep
	return rep
}

// cgroupDir is a cgroup2 directory the workload could open.
type cgroupDir struct {
	Path   string            `json:"path"`
	Dev    uint64            `json:"dev"`
	Ino    uint64            `json:"ino"`
	Attach map[string]string `json:"attach"` // method: outcome
}

// cgroupReport is what the cgroup workload found.
type cgroupReport struct {
	Dirs    []cgroupDir       `json:"dirs"`
	Tried   map[string]string `json:"tried"` // path or step: outcome
	ProgIDs []uint32          `json:"prog_ids"`
	PidNS   uint64            `json:"pidns"`
	Pid     int               `json:"pid"`
	Errors  []string          `json:"errors,omitempty"`
}

// cgroupCandidates lists the paths where a cgroup2 tree may be reachable.
func cgroupCandidates() []string {
	paths := []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified",
		"/proc/1/root/sys/fs/cgroup", "/proc/1/root/sys/fs/cgroup/unified"}
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			paths = append(paths, f[4])
		}
	}
	return paths
}

// cgroupAttack attaches cgroup_skb egress programs, by link and by
// BPF_PROG_ATTACH, to every cgroup2 directory it can open: the usual mount
// points, what mountinfo lists, pid 1's root, a cgroup2 mount of its own,
// and all of those again after unmounting /sys/fs/cgroup and /sys. It
// first reports who it is and waits for a line on stdin, so that the test
// can look at its cgroup before the attack; then it reports the attack and
// waits for another line, so that the test can look while it runs.
func cgroupAttack() any {
	rep := cgroupReport{Tried: map[string]string{}, Pid: os.Getpid()}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err == nil {
		rep.PidNS = st.Ino
	}
	stdin := bufio.NewReader(os.Stdin)
	json.NewEncoder(os.Stdout).Encode(rep)
	stdin.ReadString('\n')
	// Two programs that pass every packet: one attached through
	// BPF_PROG_ATTACH, which outlives the process, one through links.
	raw, rawID, err := loadProg(ebpf.CGroupSKB, ebpf.AttachCGroupInetEgress, 1)
	if err != nil {
		rep.Errors = append(rep.Errors, "load cgroup_skb: "+err.Error())
	}
	lnk, lnkID, err2 := loadProg(ebpf.CGroupSKB, ebpf.AttachCGroupInetEgress, 1)
	if err2 != nil {
		rep.Errors = append(rep.Errors, "load cgroup_skb: "+err2.Error())
	}
	if err != nil || err2 != nil {
		return rep
	}
	rep.ProgIDs = []uint32{rawID, lnkID}
	seen := map[[2]uint64]bool{}
	var keep []link.Link
	attachAll := func(stage string) {
		var dirs []string
		for _, p := range cgroupCandidates() {
			dirs = append(dirs, walkCgroups(p, 2, 32)...)
		}
		for _, p := range dirs {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				rep.Tried[stage+" "+p] = outcome(err)
				continue
			}
			key := [2]uint64{st.Dev, st.Ino}
			if seen[key] {
				continue
			}
			seen[key] = true
			d := cgroupDir{Path: stage + " " + p, Dev: st.Dev, Ino: st.Ino, Attach: map[string]string{}}
			f, err := os.Open(p)
			if err != nil {
				d.Attach["open"] = outcome(err)
				rep.Dirs = append(rep.Dirs, d)
				continue
			}
			err = link.RawAttachProgram(link.RawAttachProgramOptions{Target: int(f.Fd()), Program: raw,
				Attach: ebpf.AttachCGroupInetEgress, Flags: unix.BPF_F_ALLOW_MULTI})
			d.Attach["prog_attach"] = outcome(err)
			l, err := link.AttachCgroup(link.CgroupOptions{Path: p, Attach: ebpf.AttachCGroupInetEgress, Program: lnk})
			d.Attach["link"] = outcome(err)
			if err == nil {
				keep = append(keep, l)
			}
			f.Close()
			rep.Dirs = append(rep.Dirs, d)
		}
	}
	attachAll("initial")
	// A cgroup2 mount of its own shows the root of its cgroup namespace;
	// the next attachAll finds it in mountinfo.
	ownMount := func(stage string) {
		if dir, err := os.MkdirTemp("", "cg2-"); err == nil {
			rep.Tried[stage+" mount cgroup2 "+dir] = outcome(unix.Mount("none", dir, "cgroup2", 0, ""))
		}
	}
	ownMount("initial")
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys"} {
		rep.Tried["umount "+p] = outcome(unix.Unmount(p, unix.MNT_DETACH))
	}
	ownMount("after umount")
	attachAll("after umount")
	json.NewEncoder(os.Stdout).Encode(rep)
	stdin.ReadString('\n')
	for _, l := range keep {
		l.Close()
	}
	return map[string]string{"done": "ok"}
}

// walkCgroups returns root and its cgroup2 subdirectories, depth levels
// down, at most max of them; nothing if root is no cgroup2 directory.
func walkCgroups(root string, depth, max int) []string {
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil || sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	out := []string{root}
	if depth == 0 {
		return out
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if len(out) >= max {
			break
		}
		if e.IsDir() {
			out = append(out, walkCgroups(filepath.Join(root, e.Name()), depth-1, max-len(out))...)
		}
	}
	return out
}

// procsReport is what the process workload sees of itself and others.
type procsReport struct {
	UIDMap string            `json:"uid_map"`
	GIDMap string            `json:"gid_map"`
	Pid    int               `json:"pid"`
	PidNS  uint64            `json:"pidns"`
	Procs  map[string]string `json:"procs"` // pid: cmdline, as listed in /proc
	Kill   map[string]string `json:"kill"`  // pid: outcome of kill -9
}

// procsAttack reports its id maps and the processes it can see, waits for
// a line of host pids on stdin, sends each SIGKILL and reports again.
func procsAttack() any {
	rep := procsReport{Pid: os.Getpid(), Procs: map[string]string{}, Kill: map[string]string{}}
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	gidMap, _ := os.ReadFile("/proc/self/gid_map")
	rep.UIDMap, rep.GIDMap = idMapLines(uidMap), idMapLines(gidMap)
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err == nil {
		rep.PidNS = st.Ino
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		c := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		if len(c) > 40 {
			c = c[:40] + "..."
		}
		rep.Procs[e.Name()] = c
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		err = unix.Kill(pid, unix.SIGKILL)
		if errors.Is(err, unix.ESRCH) {
			err = unix.ESRCH
		}
		rep.Kill[f] = outcome(err)
	}
	rep.Procs = nil
	return rep
}

// idMapLines normalizes the spacing of /proc/PID/uid_map: "0 100000 65536"
// lines, separated by "; ".
func idMapLines(data []byte) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		lines = append(lines, strings.Join(strings.Fields(line), " "))
	}
	return strings.Join(lines, "; ")
}
