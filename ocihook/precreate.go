package ocihook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/profile"
)

// PrecreateStage is the hooks.d stage of podman (containers/common) whose
// hooks get the container's config on stdin and print the config the
// runtime is to use.
const PrecreateStage = "precreate"

// ErrConfigFormat means a field of the config Precreate edits has an
// unexpected JSON type or spelling.
var ErrConfigFormat = errors.New("unexpected OCI config")

// AllowBPFSyscall is the rule Precreate puts first in linux.seccomp.syscalls.
// config.json has no conditions on capabilities (podman resolved the
// profile's includes/excludes for this container already), and the
// container gets CAP_BPF with it.
var AllowBPFSyscall = specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActAllow}

// PrecreateOptions of Precreate.
type PrecreateOptions struct {
	// Policy loads the host policy (profile.LoadPolicy of
	// profile.DefaultConfig, with the built-in profiles when it does not
	// exist, if nil).
	Policy func(*delegate.Names) (*profile.Policy, error)
	// Names are the running kernel's (delegate.KernelNames if nil).
	Names *delegate.Names
	// Hook is the createRuntime hook that mounts the profile's bpffs
	// (`bpfgate oci-hook`). Precreate adds it to an annotated container's
	// config unless a bpfgate oci-hook is already there (from a hooks.d
	// entry or a CDI device); nil adds none.
	Hook *specs.Hook
}

// PrecreateResult says what Precreate did to a config.
type PrecreateResult struct {
	Profile string `json:"profile,omitempty"`
	// Caps were added to the container's capability sets.
	Caps []string `json:"caps_added,omitempty"`
	// Seccomp: the bpf(2) rule was added.
	Seccomp bool `json:"seccomp_rule_added,omitempty"`
	// Hook: the createRuntime hook was added.
	Hook bool `json:"hook_added,omitempty"`
	// Refused is why the container gets no rights, for a container that
	// asks for a profile. The createRuntime hook refuses it again, where
	// the runtime shows the message.
	Refused error `json:"-"`
}

// Changed reports whether Precreate changed the config.
func (r *PrecreateResult) Changed() bool {
	return len(r.Caps) > 0 || r.Seccomp || r.Hook
}

// ReadConfig reads a container's config (config.json) from r, at most
// MaxSpecSize bytes of it, and decodes it.
func ReadConfig(r io.Reader) ([]byte, *specs.Spec, error) {
	data, err := io.ReadAll(boundedio.NewReader(r, MaxSpecSize, "the OCI config on stdin"))
	if err != nil {
		return nil, nil, fmt.Errorf("read the OCI config from stdin (bpfgate oci-hook precreate is meant to be run by podman as a hooks.d precreate hook): %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, nil, fmt.Errorf("the OCI config on stdin: %w", err)
	}
	// A config must be an object: "null" decodes without an error.
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		return nil, nil, errors.New("the OCI config on stdin is not a JSON object")
	}
	return data, &spec, nil
}

// Precreate is the podman precreate hook: it reads a container's config
// from r and returns the config the runtime is to use. A container without
// the ProfileAnnotation comes back byte for byte as it was. For one with it,
// Precreate adds what a BPF token needs and podman would only add with
// flags: the profile's capabilities (as --cap-add does: to the bounding,
// effective and permitted sets, and for a user other than root to the
// inheritable and ambient ones too), the bpf(2) rule in front of a seccomp
// filter that would fail bpf(2), and the createRuntime hook (opts.Hook)
// that mounts the profile's bpffs. It never adds a user namespace: that
// stays the user's choice.
//
// A container that asks for a profile the host does not allow, or that has
// no user namespace of its own, gets nothing but the hook: Result.Refused
// says why, and the hook refuses the container, with a message the runtime
// shows (podman drops what a precreate hook writes to stderr). Running
// Precreate on its own output changes nothing.
//
// The config is edited as JSON: every field Precreate does not change, and
// every other seccomp rule, comes out as it was.
func Precreate(r io.Reader, opts PrecreateOptions) ([]byte, *PrecreateResult, error) {
	data, spec, err := ReadConfig(r)
	if err != nil {
		return nil, nil, err
	}
	res := &PrecreateResult{}
	name := spec.Annotations[ProfileAnnotation]
	if name == "" {
		return data, res, nil
	}
	res.Profile = name
	caps, refused := precreateGrant(spec, name, opts)
	doc, err := newConfigDoc(data)
	if err != nil {
		return nil, nil, err
	}
	if opts.Hook != nil && !hasMountHook(spec, opts.Hook) {
		if err := doc.addHook(*opts.Hook); err != nil {
			return nil, nil, err
		}
		res.Hook = true
	}
	if refused == nil {
		// A seccomp section bpfgate cannot read is refused by the hook too.
		res.Seccomp, refused = doc.allowBPF(spec)
		if refused != nil && !errors.Is(refused, ErrSeccomp) {
			return nil, nil, refused
		}
	}
	if refused != nil {
		res.Refused = refused
	} else {
		root := spec.Process == nil || spec.Process.User.UID == 0
		if res.Caps, err = doc.addCaps(caps, root); err != nil {
			return nil, nil, err
		}
	}
	if !res.Changed() {
		return data, res, nil
	}
	out, err := json.Marshal(doc.root)
	if err != nil {
		return nil, nil, err
	}
	return out, res, nil
}

// precreateGrant finds the profile and the caps it needs, or says why the
// container gets none.
func precreateGrant(spec *specs.Spec, name string, opts PrecreateOptions) ([]string, error) {
	names := opts.Names
	if names == nil {
		var err error
		if names, err = delegate.KernelNames(); err != nil {
			return nil, err
		}
	}
	loadPolicy := opts.Policy
	if loadPolicy == nil {
		loadPolicy = func(n *delegate.Names) (*profile.Policy, error) {
			return profile.LoadPolicy(profile.DefaultConfig, n, true)
		}
	}
	policy, err := loadPolicy(names)
	if err != nil {
		return nil, err
	}
	p, err := policy.Find(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAllowed, err)
	}
	if err := annotationAllowed(p); err != nil {
		return nil, err
	}
	grant, err := p.Grant(names)
	if err != nil {
		return nil, err
	}
	if !ownUserNS(spec) {
		return nil, fmt.Errorf("%w: %s", ErrNoUserNS, CallerOf(spec.Annotations).UserNSFix())
	}
	return capNames(grant.Caps), nil
}

// ownUserNS reports whether the config gives the container a user
// namespace: a new one with uid mappings, or an existing one by path (a
// pod's) other than the caller's own. podman --userns=auto and --uidmap
// write mappings. A path to the host's user namespace (/proc/1/ns/user)
// would put the capabilities Precreate adds there: the createRuntime hook
// refuses it too, but only if it runs, and a config may hold a hook that
// only looks like bpfgate's.
func ownUserNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	i := slices.IndexFunc(spec.Linux.Namespaces, isUserNS)
	if i < 0 {
		return false
	}
	if path := spec.Linux.Namespaces[i].Path; path != "" {
		// One the hook cannot stat, the runtime, as the same user, cannot
		// join either.
		self, err := os.Open("/proc/self/ns/user")
		if err != nil {
			return false
		}
		defer self.Close()
		same, err := sys.SameFile(self, path)
		return err == nil && !same
	}
	return len(spec.Linux.UIDMappings) > 0
}

// hasMountHook reports whether the config already runs bpfgate's mount
// hook at createRuntime (from a hooks.d entry or a CDI device): the oci-hook
// command of the same binary, of one named like it, or of one that calls
// itself bpfgate, as the entries bpfgate writes do.
func hasMountHook(spec *specs.Spec, want *specs.Hook) bool {
	if spec.Hooks == nil {
		return false
	}
	for _, h := range spec.Hooks.CreateRuntime {
		if len(h.Args) < 2 || h.Args[1] != "oci-hook" {
			continue
		}
		if h.Path == want.Path || filepath.Base(h.Path) == filepath.Base(want.Path) || filepath.Base(h.Args[0]) == "bpfgate" {
			return true
		}
	}
	return false
}

// configDoc is a config.json as JSON objects, so that what Precreate does
// not touch is written back as it came.
type configDoc struct {
	root object
}

func newConfigDoc(data []byte) (*configDoc, error) {
	var root object
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("the OCI config on stdin: %w", err)
	}
	return &configDoc{root: root}, nil
}

// field decodes the value at key of obj into dst, if there is one. A key
// spelt in another case is refused: podman decodes the config with
// encoding/json, which matches keys without regard to case, so it would
// read "Process" as the process the edit does not see.
func field(obj object, key, path string, dst any, want string) error {
	for k := range obj {
		if k != key && strings.EqualFold(k, key) {
			return fmt.Errorf("%w: %s: write it as %q", ErrConfigFormat, path[:len(path)-len(key)]+k, key)
		}
	}
	raw, ok := obj[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: %s: want %s, got %s", ErrConfigFormat, path, want, jsonKind(raw))
	}
	return nil
}

// child returns the object at key of parent, or an empty one.
func child(parent object, key, path string) (object, error) {
	var o object
	if err := field(parent, key, path, &o, "an object"); err != nil {
		return nil, err
	}
	if o == nil {
		o = object{}
	}
	return o, nil
}

// addCaps adds caps to the sets podman's --cap-add puts them in and
// returns those it added to any set.
func (d *configDoc) addCaps(caps []string, root bool) ([]string, error) {
	proc, err := child(d.root, "process", "process")
	if err != nil {
		return nil, err
	}
	capsObj, err := child(proc, "capabilities", "process.capabilities")
	if err != nil {
		return nil, err
	}
	sets := []string{"bounding", "effective", "permitted"}
	if !root {
		sets = append(sets, "inheritable", "ambient")
	}
	var added []string
	for _, set := range sets {
		var have []string
		if err := field(capsObj, set, "process.capabilities."+set, &have, "a list of strings"); err != nil {
			return nil, err
		}
		n := len(have)
		for _, c := range caps {
			if !slices.Contains(have, c) {
				have = append(have, c)
				if !slices.Contains(added, c) {
					added = append(added, c)
				}
			}
		}
		if len(have) != n {
			capsObj[set] = mustMarshal(have)
		}
	}
	if len(added) == 0 {
		return nil, nil
	}
	proc["capabilities"] = mustMarshal(capsObj)
	d.root["process"] = mustMarshal(proc)
	slices.SortFunc(added, func(a, b string) int { return slices.Index(caps, a) - slices.Index(caps, b) })
	return added, nil
}

// allowBPF puts AllowBPFSyscall first in linux.seccomp.syscalls when the
// filter would fail some bpf(2) call: runc and crun build the filter with
// libseccomp, which keeps the first rule it is given for a system call, as
// seccomp.EvalOCI reads it. No seccomp section: nothing to do.
func (d *configDoc) allowBPF(spec *specs.Spec) (bool, error) {
	if spec.Linux == nil || spec.Linux.Seccomp == nil {
		return false, nil
	}
	res, err := seccomp.EvalOCI(spec.Linux.Seccomp)
	if err != nil {
		return false, fmt.Errorf("%w: config.json linux.seccomp: %w", ErrSeccomp, err)
	}
	if res.Allowed() {
		return false, nil
	}
	linux, err := child(d.root, "linux", "linux")
	if err != nil {
		return false, err
	}
	sc, err := child(linux, "seccomp", "linux.seccomp")
	if err != nil {
		return false, err
	}
	var rules []json.RawMessage
	if err := field(sc, "syscalls", "linux.seccomp.syscalls", &rules, "a list of rules"); err != nil {
		return false, err
	}
	sc["syscalls"] = mustMarshal(append([]json.RawMessage{mustMarshal(AllowBPFSyscall)}, rules...))
	linux["seccomp"] = mustMarshal(sc)
	d.root["linux"] = mustMarshal(linux)
	return true, nil
}

// addHook appends h to hooks.createRuntime.
func (d *configDoc) addHook(h specs.Hook) error {
	hooks, err := child(d.root, "hooks", "hooks")
	if err != nil {
		return err
	}
	var list []json.RawMessage
	if err := field(hooks, "createRuntime", "hooks.createRuntime", &list, "a list of hooks"); err != nil {
		return err
	}
	hooks["createRuntime"] = mustMarshal(append(list, mustMarshal(h)))
	d.root["hooks"] = mustMarshal(hooks)
	return nil
}
