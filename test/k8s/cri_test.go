package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

// Host ids for the pods' user namespaces: 64Ki each, from a block of 64
// ranges that depends on the test process, so that runs of this package
// from several checkouts rarely share ids. All below 0x70000000, where
// bpfgate run's pool starts, and above test/containers' ranges.
const (
	idBase    = 0x68000000
	idRange   = 0x10000
	idsPerRun = 64
	idBlocks  = 0x8000000 / (idRange * idsPerRun)
)

var nextPod atomic.Uint32

// pod is what a test asks of a pod and its one container.
type pod struct {
	noUserNS bool              // share the host's user namespace
	noCapBPF bool              // no CAP_BPF for the container
	devices  []string          // CDI devices in the container config's CDI_devices field
	annots   map[string]string // the container's annotations
	command  []string          // default: ebpfcheck
}

// CRI JSON configs as crictl reads them (the CRI API's field names).
type (
	podConfig struct {
		Metadata     metadata          `json:"metadata"`
		LogDirectory string            `json:"log_directory"`
		Annotations  map[string]string `json:"annotations,omitempty"`
		Linux        podLinux          `json:"linux"`
	}
	metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
		UID       string `json:"uid,omitempty"`
	}
	podLinux struct {
		CgroupParent    string          `json:"cgroup_parent"`
		SecurityContext securityContext `json:"security_context"`
	}
	securityContext struct {
		NamespaceOptions namespaceOptions `json:"namespace_options"`
		Capabilities     *capabilities    `json:"capabilities,omitempty"`
		Seccomp          *seccompProfile  `json:"seccomp,omitempty"`
	}
	namespaceOptions struct {
		Network       int           `json:"network"` // 0 pod, 1 container, 2 node
		Pid           int           `json:"pid"`
		Ipc           int           `json:"ipc"`
		UsernsOptions usernsOptions `json:"userns_options"`
	}
	usernsOptions struct {
		Mode int     `json:"mode"`
		Uids []idMap `json:"uids,omitempty"`
		Gids []idMap `json:"gids,omitempty"`
	}
	idMap struct {
		HostID      uint32 `json:"host_id"`
		ContainerID uint32 `json:"container_id"`
		Length      uint32 `json:"length"`
	}
	capabilities struct {
		Add []string `json:"add_capabilities"`
	}
	seccompProfile struct {
		ProfileType int `json:"profile_type"` // 0: RuntimeDefault
	}
	containerConfig struct {
		Metadata    metadata          `json:"metadata"`
		Image       imageSpec         `json:"image"`
		Command     []string          `json:"command"`
		LogPath     string            `json:"log_path"`
		Annotations map[string]string `json:"annotations,omitempty"`
		CDIDevices  []cdiDevice       `json:"CDI_devices,omitempty"`
		Linux       containerLinux    `json:"linux"`
	}
	imageSpec struct {
		Image string `json:"image"`
	}
	cdiDevice struct {
		Name string `json:"name"`
	}
	containerLinux struct {
		SecurityContext securityContext `json:"security_context"`
	}
)

// criRuntime is what the pod helpers need of a harness's CRI runtime
// (Containerd, CRIO).
type criRuntime interface {
	// Crictl runs crictl on the runtime.
	Crictl(args ...string) (string, error)
	// cgroupParent is the cgroup the harness's pods go below.
	cgroupParent() string
}

// started is a pod whose container was started.
type started struct {
	dir       string
	pod, ctr  string
	podConfig string
	took      [3]time.Duration // runp, create, start
}

// configs writes the pod's and its container's CRI configs in a new
// directory and returns it.
func (e *env) configs(t testing.TB, p pod) string {
	t.Helper()
	n := nextPod.Add(1)
	dir := filepath.Join(e.dir, "pods", fmt.Sprint(n))
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	ns := namespaceOptions{Network: 0, Pid: 1, Ipc: 0, UsernsOptions: usernsOptions{Mode: 2}}
	if !p.noUserNS {
		block := uint32(os.Getpid()) % idBlocks
		host := idBase + (block*idsPerRun+n%idsPerRun)*idRange
		ids := []idMap{{HostID: host, ContainerID: 0, Length: idRange}}
		ns.UsernsOptions = usernsOptions{Mode: 0, Uids: ids, Gids: ids}
	}
	name := strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(strings.ToLower(t.Name()))
	pc := podConfig{
		Metadata:     metadata{Name: fmt.Sprintf("%.40s-%d", name, n), Namespace: "bpfgate-test", UID: fmt.Sprintf("bpfgate-test-%d-%d", os.Getpid(), n)},
		LogDirectory: filepath.Join(dir, "logs"),
		Linux:        podLinux{CgroupParent: e.cri.cgroupParent(), SecurityContext: securityContext{NamespaceOptions: ns}},
	}
	caps := []string{"BPF"}
	if p.noCapBPF {
		caps = []string{}
	}
	cmd := p.command
	if cmd == nil {
		cmd = []string{"/bin/ebpfcheck"}
	}
	cc := containerConfig{
		Metadata: metadata{Name: "c"}, Image: imageSpec{Image: testImage}, Command: cmd, LogPath: "c.log",
		Annotations: p.annots,
		Linux: containerLinux{SecurityContext: securityContext{NamespaceOptions: ns,
			Capabilities: &capabilities{Add: caps}, Seccomp: &seccompProfile{ProfileType: 0}}},
	}
	for _, d := range p.devices {
		cc.CDIDevices = append(cc.CDIDevices, cdiDevice{Name: d})
	}
	for file, v := range map[string]any{"pod.json": pc, "container.json": cc} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start runs crictl runp, create and start on the configs in dir. On error
// the pod is removed and the error is crictl's.
func (e *env) start(t testing.TB, dir string) (*started, error) {
	t.Helper()
	s := &started{dir: dir, podConfig: filepath.Join(dir, "pod.json")}
	begin := time.Now()
	out, err := e.cri.Crictl("runp", s.podConfig)
	if err != nil {
		return nil, err
	}
	s.took[0] = time.Since(begin)
	s.pod = strings.TrimSpace(out)
	begin = time.Now()
	if out, err = e.cri.Crictl("create", s.pod, filepath.Join(dir, "container.json"), s.podConfig); err == nil {
		s.took[1] = time.Since(begin)
		s.ctr = strings.TrimSpace(out)
		begin = time.Now()
		_, err = e.cri.Crictl("start", s.ctr)
		s.took[2] = time.Since(begin)
	}
	if err != nil {
		e.remove(t, s)
		return nil, err
	}
	return s, nil
}

// remove removes the pod and its container.
func (e *env) remove(t testing.TB, s *started) {
	t.Helper()
	if _, err := e.cri.Crictl("rmp", "--force", s.pod); err != nil {
		t.Errorf("remove pod %s: %v", s.pod, err)
	}
}

// output waits for the container to exit and returns what it wrote to
// its standard output.
func (e *env) output(t *testing.T, s *started) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := e.cri.Crictl("inspect", "--output", "json", s.ctr)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("crictl inspect: %v: %q", err, out)
		}
		if st.Status.State == "CONTAINER_EXITED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: still %s after a minute", s.ctr, st.Status.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// CRI log lines: TIME STREAM TAG CONTENT. Only stdout: under CRI-O the
	// container's stderr also has what runc warns about while creating it.
	data, err := os.ReadFile(filepath.Join(s.dir, "logs", "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 && f[1] == "stdout" {
			out = append(out, f[3])
		}
	}
	return strings.Join(out, "\n")
}

// check runs ebpfcheck in a pod and decodes its report, after checking
// that the container runs in the user namespace its pod config asks for.
func (e *env) check(t *testing.T, p pod) map[string]string {
	t.Helper()
	p.command = []string{"/bin/sh", "-c", "cat /proc/self/uid_map; exec /bin/ebpfcheck"}
	dir := e.configs(t, p)
	s, err := e.start(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.remove(t, s)
	out := e.output(t, s)
	uidMap, report, _ := strings.Cut(out, "\n")
	var pc podConfig
	data, err := os.ReadFile(filepath.Join(dir, "pod.json"))
	if err == nil {
		err = json.Unmarshal(data, &pc)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := "0 0 4294967295"
	if ids := pc.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Uids; len(ids) == 1 {
		want = fmt.Sprintf("0 %d %d", ids[0].HostID, ids[0].Length)
	}
	if got := strings.Join(strings.Fields(uidMap), " "); got != want {
		t.Errorf("the container's uid_map is %q, want %q", got, want)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(report), &res); err != nil {
		t.Fatalf("ebpfcheck: %v: %q", err, out)
	}
	return res
}

func expect(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

var (
	demoAllowed = map[string]string{"map/hash": "ok", "map/array": "ok", "prog/socket_filter": "ok",
		"map/lru_hash": "EPERM", "map/ringbuf": "EPERM", "prog/xdp": "EPERM", "prog/kprobe": "EPERM"}
	nothingAllowed = map[string]string{"map/hash": "EPERM", "map/array": "EPERM", "prog/socket_filter": "EPERM",
		"map/lru_hash": "EPERM", "prog/xdp": "EPERM", "prog/kprobe": "EPERM"}
)

const demoDevice = "bpfgate.dev/bpf=demo"

// cdiAnnotation is how a CRI client that predates the CDI_devices field
// (and kubelet's device plugins before 1.28) asks for CDI devices: keys
// with the cdi.k8s.io/ prefix, the value a comma-separated device list.
const cdiAnnotation = "cdi.k8s.io/bpfgate-test"

func TestCRICDIDevice(t *testing.T) {
	checkCDIDevice(t, setup(t))
}

// checkCDIDevice: on e's runtime, a pod with a user namespace gets exactly
// the demo profile's rights through the CRI CDI field and the cdi.k8s.io
// annotation, and nothing without the device.
func checkCDIDevice(t *testing.T, e *env) {
	for _, tc := range []struct {
		name string
		pod  pod
		want map[string]string
	}{
		{"CDI field", pod{devices: []string{demoDevice}}, demoAllowed},
		{"CDI annotation", pod{annots: map[string]string{cdiAnnotation: demoDevice}}, demoAllowed},
		{"no device", pod{}, nothingAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, e.check(t, tc.pod), tc.want)
		})
	}
}

// TestCRIRefusals: the hook's refusal reaches the CRI client word for word
// (crictl start fails with it). The expected texts are built from
// ocihook's and profile's exported errors, so that rewording them (to fit
// the caller) does not break this test, while dropping them from the
// client's error does.
func TestCRIRefusals(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		name string
		pod  pod
		want string
	}{
		{"no user namespace", pod{noUserNS: true, devices: []string{demoDevice}},
			ocihook.ErrNoUserNS.Error()},
		{"no CAP_BPF", pod{noCapBPF: true, devices: []string{demoDevice}},
			ocihook.ErrMissingCaps.Error() + ": CAP_BPF"},
		{"no CAP_BPF, CDI annotation", pod{noCapBPF: true, annots: map[string]string{cdiAnnotation: demoDevice}},
			ocihook.ErrMissingCaps.Error() + ": CAP_BPF"},
		{"profile not allowed", pod{devices: []string{"bpfgate.dev/bpf=gone"}},
			fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.expectRefusal(t, tc.pod, tc.want)
		})
	}
}

// expectRefusal starts p and wants crictl to fail with want, word for word.
func (e *env) expectRefusal(t *testing.T, p pod, want string) {
	t.Helper()
	s, err := e.start(t, e.configs(t, p))
	if err == nil {
		e.remove(t, s)
		t.Fatalf("the container started; want crictl to fail with %q", want)
	}
	// crictl logs the error as a quoted string: " becomes \".
	quoted := strconv.Quote(want)
	if !strings.Contains(err.Error(), quoted[1:len(quoted)-1]) {
		t.Fatalf("crictl's error does not say %q:\n%v", want, err)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// hookTimes are the times the hook reported for the mounts it made.
func (e *env) hookTimes(t testing.TB) []time.Duration {
	t.Helper()
	data, err := os.ReadFile(e.hookLog)
	if err != nil {
		t.Fatal(err)
	}
	var took []time.Duration
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var entry struct {
			Took  time.Duration `json:"took_ns"`
			Error string        `json:"error"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Error == "" && entry.Took > 0 {
			took = append(took, entry.Took)
		}
	}
	return took
}
