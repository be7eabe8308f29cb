package ocihook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/profile"
)

const precreatePolicy = `profiles:
  demo:
    cmds: [map_create, prog_load, btf_load]
    maps: [hash, array]
    progs: [socket_filter]
    attachs: [cgroup_inet_ingress]
  xdp:
    cmds: [map_create, prog_load]
    maps: [lru_hash]
    progs: [xdp]
    attachs: [xdp]
`

// precreateOpts are options with the test policy and the running kernel's
// names.
func precreateOpts(t testing.TB) PrecreateOptions {
	t.Helper()
	names, err := delegate.KernelNames()
	if err != nil {
		testutil.Skip(t, "kernel names: "+err.Error())
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(precreatePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return PrecreateOptions{
		Names:  names,
		Policy: func(n *delegate.Names) (*profile.Policy, error) { return profile.LoadPolicy(path, n, false) },
		Hook:   &specs.Hook{Path: "/usr/bin/bpfgate", Args: []string{"bpfgate", "oci-hook"}},
	}
}

// podmanConfig is a config as podman 4.3 hands it to a precreate hook, cut
// down: Debian 12's default seccomp profile rendered for a container
// without CAP_SYS_ADMIN, a field bpfgate does not know, and numbers too
// large for a float64.
const podmanConfig = `{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0,"gid":0},"args":["/bin/ebpfcheck"],
"capabilities":{"bounding":["CAP_CHOWN","CAP_SETUID"],"effective":["CAP_CHOWN","CAP_SETUID"],"permitted":["CAP_CHOWN","CAP_SETUID"]}},
"root":{"path":"/var/lib/containers/storage/overlay/x/merged"},"hooks":{"poststop":[{"path":"/usr/bin/true"}]},
"annotations":{"io.container.manager":"libpod","io.kubernetes.cri-o.TTY":"false",ANNOTATION"org.opencontainers.image.stopSignal":"15"},
"x-future-field":{"keep":[1,2,3]},
"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}USERNS],UIDMAP
"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64"],"syscalls":[
{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]},
{"names":["bpf","perf_event_open","setns"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}}}`

func config(profile string, userns, uidmap bool) string {
	s := podmanConfig
	ann := ""
	if profile != "" {
		ann = `"io.bpfgate.profile":"` + profile + `",`
	}
	s = strings.Replace(s, "ANNOTATION", ann, 1)
	if userns {
		s = strings.Replace(s, "USERNS", `,{"type":"user"}`, 1)
	} else {
		s = strings.Replace(s, "USERNS", "", 1)
	}
	if uidmap {
		s = strings.Replace(s, "UIDMAP", `"uidMappings":[{"containerID":0,"hostID":1610612736,"size":65536}],"gidMappings":[{"containerID":0,"hostID":1610612736,"size":65536}],`, 1)
	} else {
		s = strings.Replace(s, "UIDMAP", "", 1)
	}
	return s
}

func TestPrecreate(t *testing.T) {
	opts := precreateOpts(t)
	noHook := opts
	noHook.Hook = nil
	ok := config("demo", true, true)
	edit := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in the config", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	withHook := edit(ok, `"hooks":{`, `"hooks":{"createRuntime":[{"path":"/usr/local/bin/bpfgate","args":["bpfgate","oci-hook","--log","/l"]}],`)
	for _, tc := range []struct {
		name    string
		in      string
		opts    PrecreateOptions
		caps    []string // added
		sets    []string // the sets that must hold them
		seccomp bool
		hook    bool
		refused error
		msg     string
	}{
		{name: "not annotated", in: config("", true, true), opts: opts},
		{name: "empty annotation", in: edit(config("", true, true), `"io.container.manager"`, `"io.bpfgate.profile":"","io.container.manager"`), opts: opts},
		{name: "demo", in: ok, opts: opts, caps: []string{"CAP_BPF"}, sets: []string{"bounding", "effective", "permitted"}, seccomp: true, hook: true},
		{name: "xdp needs CAP_NET_ADMIN", in: config("xdp", true, true), opts: opts, caps: []string{"CAP_BPF", "CAP_NET_ADMIN"},
			sets: []string{"bounding", "effective", "permitted"}, seccomp: true, hook: true},
		{name: "not root: ambient too, as podman --cap-add", in: edit(ok, `"uid":0`, `"uid":1000`), opts: opts, caps: []string{"CAP_BPF"},
			sets: []string{"bounding", "effective", "permitted", "inheritable", "ambient"}, seccomp: true, hook: true},
		{name: "caps already there", in: edit(ok, `"bounding":["CAP_CHOWN"`, `"bounding":["CAP_BPF","CAP_CHOWN"`), opts: opts,
			caps: []string{"CAP_BPF"}, sets: []string{"effective", "permitted"}, seccomp: true, hook: true},
		{name: "no seccomp section", in: edit(ok, `"seccomp":`, `"x-seccomp":`), opts: opts, caps: []string{"CAP_BPF"},
			sets: []string{"bounding"}, hook: true},
		{name: "seccomp lets bpf through", in: edit(ok, `"names":["read","write"]`, `"names":["read","write","bpf"]`), opts: opts,
			caps: []string{"CAP_BPF"}, sets: []string{"bounding"}, hook: true},
		{name: "hook from hooks.d already there", in: withHook, opts: opts, caps: []string{"CAP_BPF"}, sets: []string{"bounding"}, seccomp: true},
		{name: "no hook to add", in: ok, opts: noHook, caps: []string{"CAP_BPF"}, sets: []string{"bounding"}, seccomp: true},
		{name: "joins a pod's user namespace", in: edit(config("demo", false, false), `{"type":"mount"}`, `{"type":"mount"},{"type":"user","path":"`+podUserNS(t)+`"}`),
			opts: opts, caps: []string{"CAP_BPF"}, sets: []string{"bounding"}, seccomp: true, hook: true},
		{name: "no user namespace", in: config("demo", false, false), opts: opts, hook: true, refused: ErrNoUserNS,
			msg: "podman run --userns=auto"},
		{name: "no user namespace, runc", in: edit(config("demo", false, false), `"io.container.manager":"libpod",`, ""), opts: opts,
			hook: true, refused: ErrNoUserNS, msg: "add a namespace of type user to linux.namespaces"},
		{name: "user namespace without mappings", in: config("demo", true, false), opts: opts, hook: true, refused: ErrNoUserNS},
		{name: "profile not allowed", in: config("trace", true, true), opts: opts, hook: true, refused: ErrNotAllowed,
			msg: `unknown profile "trace" (known: demo, xdp)`},
		{name: "refused, hook there already", in: edit(withHook, `"io.bpfgate.profile":"demo"`, `"io.bpfgate.profile":"trace"`), opts: opts, refused: ErrNotAllowed},
		{name: "seccomp bpfgate cannot read", in: edit(ok, `"defaultAction":"SCMP_ACT_ERRNO"`, `"defaultAction":"SCMP_ACT_BOGUS"`), opts: opts,
			hook: true, refused: ErrSeccomp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res, err := Precreate(strings.NewReader(tc.in), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(res.Refused, tc.refused) || tc.refused == nil && res.Refused != nil {
				t.Fatalf("refused: %v, want %v", res.Refused, tc.refused)
			}
			if tc.msg != "" && !strings.Contains(res.Refused.Error(), tc.msg) {
				t.Errorf("%v does not say %q", res.Refused, tc.msg)
			}
			if !slices.Equal(res.Caps, tc.caps) || res.Seccomp != tc.seccomp || res.Hook != tc.hook {
				t.Errorf("caps %v seccomp %v hook %v, want %v %v %v", res.Caps, res.Seccomp, res.Hook, tc.caps, tc.seccomp, tc.hook)
			}
			if !res.Changed() && out != nil && !bytes.Equal(out, []byte(tc.in)) {
				t.Errorf("unchanged config rewritten:\n%s\n%s", tc.in, out)
			}
			var before, after specs.Spec
			if err := json.Unmarshal([]byte(tc.in), &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &after); err != nil {
				t.Fatalf("output is not a config: %v\n%s", err, out)
			}
			c := after.Process.Capabilities
			sets := map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable, "ambient": c.Ambient}
			for _, set := range tc.sets {
				for _, cp := range tc.caps {
					if !slices.Contains(sets[set], cp) {
						t.Errorf("%s: %v, want %s in it", set, sets[set], cp)
					}
				}
			}
			if !slices.Contains(tc.sets, "ambient") && (len(c.Ambient) > 0 || len(c.Inheritable) > 0) {
				t.Errorf("root container got ambient %v inheritable %v", c.Ambient, c.Inheritable)
			}
			if tc.refused != nil && !equalJSON(t, before.Process, after.Process) {
				t.Errorf("refused, but the process changed: %+v", after.Process.Capabilities)
			}
			// Every seccomp rule that was there is there, as it was, in order.
			if before.Linux.Seccomp != nil {
				rules := after.Linux.Seccomp.Syscalls
				if tc.seccomp {
					if !equalJSON(t, rules[0], AllowBPFSyscall) {
						t.Errorf("first rule %+v", rules[0])
					}
					rules = rules[1:]
				}
				if !equalJSON(t, rules, before.Linux.Seccomp.Syscalls) {
					t.Errorf("rules changed:\n%+v\n%+v", before.Linux.Seccomp.Syscalls, rules)
				}
				if !bytes.Contains(out, []byte(`"value":18446744073709551615`)) {
					t.Error("a large number in args lost precision")
				}
			}
			if tc.refused == nil && tc.sets != nil {
				// The createRuntime hook lets it through.
				if err := Check(&Request{Spec: &after, Caps: delegateCaps(t, tc.caps)}); err != nil {
					t.Errorf("Check after Precreate: %v", err)
				}
			}
			if !bytes.Contains(out, []byte(`"x-future-field":{"keep":[1,2,3]}`)) && !bytes.Contains(out, []byte(`"x-future-field": {`)) {
				t.Error("a field bpfgate does not know was dropped")
			}
			hooks := 0
			if after.Hooks != nil {
				for _, h := range after.Hooks.CreateRuntime {
					if len(h.Args) > 1 && h.Args[1] == "oci-hook" {
						hooks++
					}
				}
			}
			if annotated := before.Annotations[ProfileAnnotation] != ""; annotated && tc.opts.Hook != nil && hooks != 1 {
				t.Errorf("%d bpfgate createRuntime hooks, want 1", hooks)
			}
			// Idempotent: a second run changes nothing, byte for byte.
			again, res2, err := Precreate(bytes.NewReader(out), tc.opts)
			if err != nil || res2.Changed() || !bytes.Equal(again, out) {
				t.Errorf("second run: %v changed %v\n%s\n%s", err, res2.Changed(), out, again)
			}
		})
	}
}

func delegateCaps(t *testing.T, names []string) []delegate.Cap {
	caps, err := delegate.ParseCaps(names)
	if err != nil {
		t.Fatal(err)
	}
	return caps
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// TestPrecreateSeccompWorks: the rule Precreate adds lets bpf(2) through the
// filter as config.json describes it, for every command, where podman's
// rendering of the default profile failed it.
func TestPrecreateSeccompWorks(t *testing.T) {
	out, _, err := Precreate(strings.NewReader(config("demo", true, true)), precreateOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	var before, after specs.Spec
	json.Unmarshal([]byte(config("demo", true, true)), &before)
	json.Unmarshal(out, &after)
	for _, tc := range []struct {
		spec  *specs.Spec
		allow bool
	}{{&before, false}, {&after, true}} {
		res, err := seccomp.EvalOCI(tc.spec.Linux.Seccomp)
		if err != nil || res.Allowed() != tc.allow {
			t.Errorf("bpf(2): %v (%v), want allowed %v", res, err, tc.allow)
		}
		// Nothing else changed: setns is still denied.
		if a, _, _ := seccomp.OCIAction(tc.spec.Linux.Seccomp, "setns", 0); a.Allows() {
			t.Errorf("setns: %v", a)
		}
	}
}

func TestPrecreateBadInput(t *testing.T) {
	opts := precreateOpts(t)
	for _, tc := range []struct {
		name, in string
		want     error
		msg      string
	}{
		{"empty", "", nil, "the OCI config on stdin"},
		{"null", "null", nil, "not a JSON object"},
		{"a list", "[]", nil, "the OCI config on stdin"},
		{"not JSON", "{", nil, "the OCI config on stdin"},
		{"key in another case", strings.Replace(config("demo", true, true), `"process"`, `"Process"`, 1), ErrConfigFormat, `Process: write it as "process"`},
		{"cap set in another case", strings.Replace(config("demo", true, true), `"effective"`, `"Effective"`, 1), ErrConfigFormat, "process.capabilities.Effective"},
		{"too large", `{"annotations":{"x":"` + strings.Repeat("a", MaxSpecSize) + `"}}`, boundedio.ErrTooLarge, "the OCI config on stdin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := Precreate(strings.NewReader(tc.in), opts)
			if err == nil || out != nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v (%d bytes), want %v saying %q", err, len(out), tc.want, tc.msg)
			}
		})
	}
}

// FuzzPrecreate: any stdin gives an error or a config podman can decode,
// which a second run leaves alone; without the annotation, the input itself.
func FuzzPrecreate(f *testing.F) {
	for _, seed := range []string{config("demo", true, true), config("", true, true), config("demo", false, false),
		config("xdp", true, true), config("nope", true, true), `{}`, `{"annotations":{"io.bpfgate.profile":"demo"}}`,
		`{"annotations":{"io.bpfgate.profile":"demo"},"linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"size":1}],"seccomp":{"defaultAction":"SCMP_ACT_KILL"}}}`,
		`{"annotations":{"io.bpfgate.profile":"demo"},"linux":{"namespaces":[{"type":"user","path":"/proc/self/ns/user"}]}}`,
		`{"annotations":{"io.bpfgate.profile":"demo"},"process":null,"hooks":null,"linux":{"namespaces":[{"type":"user","path":"/x"}],"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":null}}}`,
	} {
		f.Add([]byte(seed))
	}
	opts := precreateOpts(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, res, err := Precreate(bytes.NewReader(data), opts)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		var spec specs.Spec
		if err := json.Unmarshal(out, &spec); err != nil {
			t.Fatalf("output does not decode: %v\n%s", err, out)
		}
		if res.Profile == "" && !bytes.Equal(out, data) {
			t.Fatalf("unannotated config changed:\n%s\n%s", data, out)
		}
		var before specs.Spec
		if err := json.Unmarshal(data, &before); err != nil {
			t.Fatalf("input did not decode (%v), output did:\n%s", err, data)
		}
		precreateOnlyAdds(t, &before, &spec, res, opts)
		again, res2, err := Precreate(bytes.NewReader(out), opts)
		if err != nil || res2.Changed() || !bytes.Equal(again, out) {
			t.Fatalf("second run: %v %+v\n%s\n%s", err, res2, out, again)
		}
	})
}

// precreateOnlyAdds fails t unless after is before with at most what
// Precreate may add: its hook after the others, the bpf(2) rule first, and
// the profile's capabilities, only to a container with a user namespace,
// for a profile the policy allows. Nothing else, above all no namespace and
// no id mapping, may change.
func precreateOnlyAdds(t *testing.T, before, after *specs.Spec, res *PrecreateResult, opts PrecreateOptions) {
	t.Helper()
	fail := func(what string) {
		t.Helper()
		b, _ := json.Marshal(before)
		a, _ := json.Marshal(after)
		t.Fatalf("%s:\n%s\n%s", what, b, a)
	}
	if !equalJSON(t, before.Annotations, after.Annotations) || !equalJSON(t, before.Root, after.Root) || before.Hostname != after.Hostname {
		fail("annotations, root or hostname changed")
	}
	var bl, al specs.Linux
	if before.Linux != nil {
		bl = *before.Linux
	}
	if after.Linux != nil {
		al = *after.Linux
	}
	if !equalJSON(t, bl.Namespaces, al.Namespaces) || !equalJSON(t, bl.UIDMappings, al.UIDMappings) ||
		!equalJSON(t, bl.GIDMappings, al.GIDMappings) || !equalJSON(t, bl.Devices, al.Devices) || !equalJSON(t, bl.MaskedPaths, al.MaskedPaths) {
		fail("namespaces, id mappings, devices or masked paths changed")
	}
	if res.Seccomp {
		if bl.Seccomp == nil || al.Seccomp == nil || len(al.Seccomp.Syscalls) != len(bl.Seccomp.Syscalls)+1 ||
			!equalJSON(t, al.Seccomp.Syscalls[0], AllowBPFSyscall) || len(bl.Seccomp.Syscalls) > 0 && !equalJSON(t, al.Seccomp.Syscalls[1:], bl.Seccomp.Syscalls) {
			fail("seccomp: more than the bpf(2) rule changed")
		}
		bl.Seccomp, al.Seccomp = nil, nil
	}
	if !equalJSON(t, bl, al) {
		fail("linux changed")
	}
	var bh, ah specs.Hooks
	if before.Hooks != nil {
		bh = *before.Hooks
	}
	if after.Hooks != nil {
		ah = *after.Hooks
	}
	if res.Hook {
		if len(ah.CreateRuntime) != len(bh.CreateRuntime)+1 || !equalJSON(t, ah.CreateRuntime[len(bh.CreateRuntime)], opts.Hook) {
			fail("hooks: more than bpfgate's createRuntime hook added")
		}
		ah.CreateRuntime = ah.CreateRuntime[:len(bh.CreateRuntime)]
	}
	if !equalJSON(t, bh, ah) {
		fail("hooks changed")
	}
	var granted []string
	if len(res.Caps) > 0 {
		if res.Refused != nil || bl.Namespaces == nil || !slices.ContainsFunc(bl.Namespaces, isUserNS) {
			fail("caps added to a refused container or one without a user namespace")
		}
		if ns := bl.Namespaces[slices.IndexFunc(bl.Namespaces, isUserNS)]; ns.Path != "" {
			if self, err := os.Stat("/proc/self/ns/user"); err == nil {
				if fi, err := os.Stat(ns.Path); err != nil || os.SameFile(fi, self) {
					fail("caps added to a container that joins the host's user namespace, or one bpfgate cannot see")
				}
			}
		}
		policy, err := opts.Policy(opts.Names)
		if err != nil {
			t.Fatal(err)
		}
		p, err := policy.Find(res.Profile)
		if err != nil {
			fail("caps for a profile the policy does not allow")
		}
		g, err := p.Grant(opts.Names)
		if err != nil {
			t.Fatal(err)
		}
		granted = capNames(g.Caps)
	}
	var bp, ap specs.Process
	if before.Process != nil {
		bp = *before.Process
	}
	if after.Process != nil {
		ap = *after.Process
	}
	var bc, ac specs.LinuxCapabilities
	if bp.Capabilities != nil {
		bc = *bp.Capabilities
	}
	if ap.Capabilities != nil {
		ac = *ap.Capabilities
	}
	for _, sets := range [][2][]string{{bc.Bounding, ac.Bounding}, {bc.Effective, ac.Effective}, {bc.Permitted, ac.Permitted},
		{bc.Inheritable, ac.Inheritable}, {bc.Ambient, ac.Ambient}} {
		for _, c := range sets[1] {
			if !slices.Contains(sets[0], c) && !slices.Contains(granted, c) {
				fail(c + " added, not one the profile grants")
			}
		}
		for _, c := range sets[0] {
			if !slices.Contains(sets[1], c) {
				fail(c + " dropped")
			}
		}
	}
	bp.Capabilities, ap.Capabilities = nil, nil
	if !equalJSON(t, bp, ap) {
		fail("process changed beyond its capabilities")
	}
}
