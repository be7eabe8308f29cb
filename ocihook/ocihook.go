package ocihook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/profile"
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
	ErrNoUserNS = errors.New("the container has no user namespace of its own, so no BPF token can work in it")
	// ErrMissingCaps means the container cannot hold the capabilities its
	// token needs.
	ErrMissingCaps = errors.New("the container lacks capabilities its BPF token needs")
	// ErrSeccomp means the container's seccomp profile fails bpf(2) before
	// the kernel could look at a token.
	ErrSeccomp = errors.New("the container's seccomp profile blocks bpf(2), so no BPF token can help it")
	// ErrAlreadyMounted means a bpffs is already mounted where the profile
	// puts one, e.g. when a container asks for two bpfgate devices.
	ErrAlreadyMounted = errors.New("a bpffs is already mounted there (one bpfgate device per container)")
	// ErrRootfs means the container's rootfs cannot be opened safely: its
	// path contains a symlink or does not name a directory.
	ErrRootfs = errors.New("cannot open the container's rootfs")
	// ErrNoTarget means the profile's path does not exist, as a directory,
	// inside the container's rootfs.
	ErrNoTarget = errors.New("the profile's path is not a directory in the container's image: create it in the image (e.g. RUN mkdir -p PATH)")
	// ErrOutsideRootfs means the profile's path resolved to a directory
	// that is not below the container's rootfs.
	ErrOutsideRootfs = errors.New("the profile's path leads out of the container's rootfs")
	// ErrRootTarget means the profile's path resolved to the container's
	// root directory itself.
	ErrRootTarget = errors.New("the profile's path resolves to the container's root directory")
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

// annotationAllowed refuses a profile limited to some Kubernetes namespaces
// (k8s_namespaces) when a container names it with ProfileAnnotation: CRI-O
// copies a pod's annotations into each of its containers and runs hooks.d
// entries on them, so any pod could name it, and only the NRI plugin and the
// DRA driver check the namespace.
func annotationAllowed(p profile.Profile) error {
	if len(p.K8sNamespaces) == 0 {
		return nil
	}
	return fmt.Errorf("%w: profile %s is for pods of the Kubernetes namespaces %s only (k8s_namespaces), and the %s annotation, which a pod of any namespace can set, cannot give it: use bpfgate's NRI plugin or DRA driver",
		ErrNotAllowed, p.Name, strings.Join(p.K8sNamespaces, ", "), ProfileAnnotation)
}

// Request is one container asking for one profile.
type Request struct {
	State   *specs.State
	Spec    *specs.Spec
	Profile profile.Profile
	// Delegation is the profile resolved against the running kernel.
	Delegation delegate.Set
	// Caps are the capabilities the token needs inside the container.
	Caps  []delegate.Cap
	Names *delegate.Names
	// Timeout bounds each wait of the mount (bpffs.HandshakeTimeout if 0).
	Timeout time.Duration
}

// Result says what the hook did.
type Result struct {
	Container string `json:"container"`
	Profile   string `json:"profile"`
	Pid       int    `json:"pid"`
	Path      string `json:"path"`   // inside the container
	Target    string `json:"target"` // the path under the rootfs, before pivot_root
	Options   string `json:"options"`
	// Audit is the file the container's bpf() calls are recorded to.
	Audit string        `json:"audit,omitempty"`
	Took  time.Duration `json:"took_ns"`
}

// Check refuses containers a token cannot work in: without a user namespace
// of their own, without the capabilities the token needs, or with a seccomp
// profile that fails bpf(2) (evaluated from config.json's linux.seccomp,
// which the runtime turns into the filter). Each refusal names the fix in
// the terms of the container's caller (CallerOf its annotations).
func Check(req *Request) error {
	spec := req.Spec
	caller := CallerOf(spec.Annotations)
	if spec.Linux == nil || !slices.ContainsFunc(spec.Linux.Namespaces, isUserNS) {
		return fmt.Errorf("%w: %s", ErrNoUserNS, caller.UserNSFix())
	}
	var bounding []string
	if spec.Process != nil && spec.Process.Capabilities != nil {
		bounding = spec.Process.Capabilities.Bounding
	}
	var missing []string
	for _, c := range capNames(req.Caps) {
		if !slices.Contains(bounding, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (%s)", ErrMissingCaps, strings.Join(missing, ", "), caller.CapsFix(missing))
	}
	return checkSeccomp(spec, caller)
}

func isUserNS(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace }

// CheckSeccomp refuses a container whose config.json seccomp section fails
// bpf(2), and says how to let it through.
func CheckSeccomp(spec *specs.Spec) error {
	return checkSeccomp(spec, CallerOf(spec.Annotations))
}

func checkSeccomp(spec *specs.Spec, caller Caller) error {
	if spec.Linux == nil {
		return nil
	}
	res, err := seccomp.EvalOCI(spec.Linux.Seccomp)
	if err != nil {
		return fmt.Errorf("%w: config.json linux.seccomp: %w", ErrSeccomp, err)
	}
	if !res.Allowed() {
		return fmt.Errorf("%w (bpf(2) would %s): %s", ErrSeccomp, res, caller.SeccompFix())
	}
	return nil
}

// RootfsPath is the container's rootfs as the runtime sees it before
// pivot_root: config.json's root.path, relative to the bundle unless it is
// absolute.
func RootfsPath(st *specs.State, spec *specs.Spec) (string, error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return "", fmt.Errorf("%w: config.json has no root.path", ErrRootfs)
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(st.Bundle, root)
	}
	if !filepath.IsAbs(root) || filepath.Clean(root) == "/" {
		return "", fmt.Errorf("%w: root.path %q (bundle %q): want a directory below /", ErrRootfs, spec.Root.Path, st.Bundle)
	}
	return filepath.Clean(root), nil
}

// OpenRootfs opens the container's rootfs (O_PATH) as the container's
// init process p sees it before pivot_root, from p's root directory,
// following no symlink: a rootfs path that contains one is refused.
func OpenRootfs(p *launch.Process, rootfs string) (*os.File, error) {
	root, err := p.OpenRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), strings.TrimPrefix(rootfs, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%w: %s contains a symlink (give the runtime the real path)", ErrRootfs, rootfs)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrRootfs, rootfs, err)
	}
	return os.NewFile(uintptr(fd), rootfs), nil
}

// OpenTarget resolves inside, the profile's path as the container will see
// it, below rootfs as if rootfs were "/": absolute symlinks and ".." in the
// image stay inside it. The directory must exist in the image.
func OpenTarget(rootfs *os.File, inside string) (*os.File, error) {
	dir, err := launch.OpenInRoot(rootfs, inside)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("%s: %w", inside, ErrNoTarget)
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s: goes through a /proc magic link or too many symlinks in the image: %w", inside, err)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", inside, err)
	}
	if err := below(dir, rootfs); err != nil {
		dir.Close()
		return nil, fmt.Errorf("%s: %w", inside, err)
	}
	// A symlink to "/" or ".." would put the bpffs over the whole rootfs.
	if a, b := sameFile(dir, rootfs); a && b == nil {
		dir.Close()
		return nil, fmt.Errorf("%s: %w", inside, ErrRootTarget)
	}
	return dir, nil
}

// fileID names a directory across mounts.
type fileID struct {
	mnt, ino uint64
	dev      uint64
}

func idOf(fd int) (fileID, error) {
	var st unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_MNT_ID, &st)
	if err != nil {
		return fileID{}, err
	}
	return fileID{st.Mnt_id, st.Ino, unix.Mkdev(st.Dev_major, st.Dev_minor)}, nil
}

func sameFile(a, b *os.File) (bool, error) {
	x, err := idOf(int(a.Fd()))
	if err != nil {
		return false, err
	}
	y, err := idOf(int(b.Fd()))
	return x == y, err
}

// below confirms that root is dir or one of its ancestors, walking ".."
// from dir with file descriptors only. openat2 already confines the
// resolution; this catches anything that would get past it.
func below(dir, root *os.File) error {
	want, err := idOf(int(root.Fd()))
	if err != nil {
		return err
	}
	cur, err := unix.FcntlInt(dir.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { unix.Close(cur) }()
	for range 4096 {
		id, err := idOf(cur)
		if err != nil {
			return err
		}
		if id == want {
			return nil
		}
		parent, err := unix.Openat(cur, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		unix.Close(cur)
		cur = parent
		pid, err := idOf(cur)
		if err != nil {
			return err
		}
		if pid == id { // the top of the mount tree
			break
		}
	}
	return ErrOutsideRootfs
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
	rootfsPath, err := RootfsPath(st, req.Spec)
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
	proc, err := launch.OpenProcess(st.Pid)
	if err != nil {
		return nil, err
	}
	defer proc.Close()
	rootfs, err := OpenRootfs(proc, rootfsPath)
	if err != nil {
		return nil, err
	}
	defer rootfs.Close()
	dir, err := OpenTarget(rootfs, p.BPFFSPath())
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(dir.Fd()), &fs); err != nil {
		return nil, fmt.Errorf("%s: %w", p.BPFFSPath(), err)
	}
	if fs.Type == unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("%s: %w", p.BPFFSPath(), ErrAlreadyMounted)
	}
	ctx := context.Background()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	if err := launch.MountIntoDirContext(ctx, proc, dir, opts); err != nil {
		if errors.Is(err, launch.ErrSharedUserNS) {
			return nil, fmt.Errorf("%w: %s", ErrNoUserNS, CallerOf(req.Spec.Annotations).UserNSFix())
		}
		return nil, err
	}
	target := filepath.Join(rootfsPath, p.BPFFSPath())
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

// Options of Run.
type Options struct {
	// Policy loads the host policy (profile.LoadPolicy of profile.DefaultConfig,
	// with the built-in profiles when it does not exist, if nil). It runs
	// after the state is read, so that a failure still names the container.
	Policy func(*delegate.Names) (*profile.Policy, error)
	// Profile is the profile to mount; the container's ProfileAnnotation if
	// empty.
	Profile string
	// Names are the running kernel's (delegate.KernelNames if nil).
	Names *delegate.Names
	// Timeout bounds each wait of the mount (bpffs.HandshakeTimeout if 0).
	Timeout time.Duration
	// Audit, if set, runs once the container passed Check and before its
	// bpffs is mounted: it starts recording the container's bpf() calls
	// and returns the file they go to ("" if none is asked for) and a
	// function that stops the recording should the mount fail. An error
	// refuses the container.
	Audit func(st *specs.State, p profile.Profile) (file string, abort func(), err error)
}

// Run is the whole hook: it reads the OCI state from r, the container's
// config.json, finds the profile the container asks for among those the
// host policy allows, and mounts its delegated bpffs in the container. The Result says
// what it did, also when it fails (as far as it got).
func Run(r io.Reader, opts Options) (*Result, error) {
	st, err := ReadState(r)
	if err != nil {
		return nil, err
	}
	res := &Result{Container: st.ID, Pid: st.Pid}
	fail := func(err error) (*Result, error) {
		return res, fmt.Errorf("container %s: %w", ShortID(st.ID), err)
	}
	name, err := ProfileName(st, opts.Profile)
	if err != nil {
		return fail(err)
	}
	res.Profile = name
	spec, err := LoadBundle(st)
	if err != nil {
		return fail(err)
	}
	names := opts.Names
	if names == nil {
		if names, err = delegate.KernelNames(); err != nil {
			return fail(err)
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
		return fail(err)
	}
	p, err := policy.Find(name)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrNotAllowed, err))
	}
	if opts.Profile == "" {
		if err := annotationAllowed(p); err != nil {
			return fail(err)
		}
	}
	grant, err := p.Grant(names)
	if err != nil {
		return fail(err)
	}
	req := &Request{State: st, Spec: spec, Profile: p, Delegation: grant.Delegation,
		Caps: grant.Caps, Names: names, Timeout: opts.Timeout}
	var (
		auditFile string
		abort     func()
	)
	if opts.Audit != nil {
		// Refuse before recording what cannot be mounted anyway.
		if err := Check(req); err != nil {
			return fail(err)
		}
		if auditFile, abort, err = opts.Audit(st, p); err != nil {
			return fail(err)
		}
	}
	done, err := Mount(req)
	if err != nil {
		if abort != nil {
			abort()
		}
		return fail(err)
	}
	done.Audit = auditFile
	return done, nil
}
