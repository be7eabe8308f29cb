package ocihook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/launch"
)

// ProfileAnnotation names the profile a container asks for when the hook
// is installed through hooks.d rather than CDI.
const ProfileAnnotation = "io.bpfgate.profile"

// Stage is the OCI hook stage bpfgate runs at.
const Stage = "createRuntime"

var (
	// ErrNoProfile means neither the hook's arguments nor the container's
	// annotations name a profile.
	ErrNoProfile = errors.New("no bpfgate profile requested: give the hook --profile NAME or annotate the container with " + ProfileAnnotation + "=NAME")
	// ErrNotAllowed means the host does not define the requested profile.
	ErrNotAllowed = errors.New("profile not allowed by the host")
	// ErrNoUserNS means the container shares the host's user namespace.
	ErrNoUserNS = errors.New("the container has no user namespace of its own, so no BPF token can work in it: run it with one (podman run --uidmap 0:100000:65536 --gidmap 0:100000:65536, or --userns=auto)")
	// ErrMissingCaps means the container cannot hold the capabilities its
	// token needs.
	ErrMissingCaps = errors.New("the container lacks capabilities its BPF token needs")
	// ErrAlreadyMounted means a bpffs is already mounted where the profile
	// puts one, e.g. when a container asks for two bpfgate devices.
	ErrAlreadyMounted = errors.New("a bpffs is already mounted there (one bpfgate device per container)")
)

// ReadState decodes the OCI state a runtime passes to a hook on stdin.
func ReadState(r io.Reader) (*specs.State, error) {
	var st specs.State
	dec := json.NewDecoder(boundedio.NewReader(r, MaxStateSize, "the OCI state on stdin"))
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("read the OCI state from stdin (bpfgate oci-hook is meant to be run by a container runtime): %w", err)
	}
	if st.Pid <= 0 {
		return nil, fmt.Errorf("the OCI state of container %q has no pid: run the hook at the %s stage", st.ID, Stage)
	}
	if st.Bundle == "" {
		return nil, fmt.Errorf("the OCI state of container %q has no bundle", st.ID)
	}
	if err := checkState(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// LoadBundle reads the container's config.json from its bundle.
func LoadBundle(st *specs.State) (*specs.Spec, error) {
	// The runtime writes config.json itself: never a link to follow.
	data, err := boundedio.ReadFileFlags(filepath.Join(st.Bundle, "config.json"), MaxSpecSize, boundedio.NoFollow)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ShortID(st.ID), err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("container %s: config.json: %w", ShortID(st.ID), err)
	}
	return &spec, nil
}

// ProfileName is the profile requested: the hook's own (from a CDI device)
// wins over the annotation.
func ProfileName(st *specs.State, fromArgs string) (string, error) {
	if fromArgs != "" {
		return fromArgs, nil
	}
	if name := st.Annotations[ProfileAnnotation]; name != "" {
		return name, nil
	}
	return "", ErrNoProfile
}

// Request is one container asking for one profile.
type Request struct {
	State   *specs.State
	Spec    *specs.Spec
	Profile delegate.Profile
	// Delegation is the profile resolved against the running kernel.
	Delegation delegate.Set
	// Caps are the capabilities the token needs inside the container.
	Caps  []launch.Cap
	Names *delegate.Names
}

// Result says what the hook did.
type Result struct {
	Container string        `json:"container"`
	Profile   string        `json:"profile"`
	Pid       int           `json:"pid"`
	Path      string        `json:"path"`   // inside the container
	Target    string        `json:"target"` // before pivot_root
	Options   string        `json:"options"`
	Took      time.Duration `json:"took_ns"`
}

// Check refuses containers a token cannot work in.
func Check(req *Request) error {
	spec := req.Spec
	if spec.Linux == nil || !slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.UserNamespace
	}) {
		return ErrNoUserNS
	}
	var bounding []string
	if spec.Process != nil && spec.Process.Capabilities != nil {
		bounding = spec.Process.Capabilities.Bounding
	}
	var missing, flags []string
	for _, c := range req.Caps {
		if !slices.Contains(bounding, c.String()) {
			missing = append(missing, c.String())
			flags = append(flags, "--cap-add "+strings.ToLower(strings.TrimPrefix(c.String(), "CAP_")))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (podman run %s)", ErrMissingCaps, strings.Join(missing, ", "), strings.Join(flags, " "))
	}
	return nil
}

// Target is where the bpffs goes as the runtime sees it before pivot_root:
// the profile's path under the container's rootfs.
func Target(st *specs.State, spec *specs.Spec, inside string) (string, error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return "", errors.New("config.json has no root.path")
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(st.Bundle, root)
	}
	return filepath.Join(root, inside), nil
}

// HostID maps an id inside the container to the host's through the
// container's id mappings.
func HostID(maps []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range maps {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			// The kernel refuses a range past the last id; so does this, rather
			// than wrap around to host root.
			if uint64(m.HostID)+uint64(id-m.ContainerID) > math.MaxUint32 {
				return 0, false
			}
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// Mount checks the request and mounts the profile's bpffs in the container.
// On error nothing is mounted and no helper is left running.
func Mount(req *Request) (*Result, error) {
	start := time.Now()
	if err := Check(req); err != nil {
		return nil, err
	}
	st, p := req.State, req.Profile
	target, err := Target(st, req.Spec, p.BPFFSPath())
	if err != nil {
		return nil, err
	}
	opts := bpffs.Options{Delegation: req.Delegation, Mode: p.Mode}
	// The host sets uid= and gid=, so they are host ids.
	for _, o := range []struct {
		what string
		id   *uint32
		maps []specs.LinuxIDMapping
		dst  **uint32
	}{{"uid", p.UID, req.Spec.Linux.UIDMappings, &opts.UID}, {"gid", p.GID, req.Spec.Linux.GIDMappings, &opts.GID}} {
		if o.id == nil {
			continue
		}
		h, ok := HostID(o.maps, *o.id)
		if !ok {
			return nil, fmt.Errorf("profile %s: %s %d is not mapped in the container", p.Name, o.what, *o.id)
		}
		*o.dst = &h
	}
	mounts, err := bpffs.MountsOf(st.Pid, req.Names)
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		if m.Path == target {
			return nil, fmt.Errorf("%s: %w", p.BPFFSPath(), ErrAlreadyMounted)
		}
	}
	if err := launch.MountInto(st.Pid, target, opts); err != nil {
		if errors.Is(err, launch.ErrSharedUserNS) {
			return nil, ErrNoUserNS
		}
		return nil, err
	}
	return &Result{Container: st.ID, Profile: p.Name, Pid: st.Pid, Path: p.BPFFSPath(), Target: target,
		Options: req.Names.FormatOptions(req.Delegation), Took: time.Since(start)}, nil
}

// ShortID is the 12-character form of a container id, as podman prints it.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
