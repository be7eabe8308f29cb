package preload

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/pins"
)

// DefaultRoot is where Apply pins objects, one directory per manifest.
const DefaultRoot = "/sys/fs/bpf/bpfgate"

// stagingDir is the directory below the root where new trees are built. Its
// name has a character manifest names may not, so it cannot collide.
const stagingDir = "@staging"

// digestLink is the symlink in each tree that records what it was built from.
const digestLink = "digest"

// ErrIncompatibleMap means a map marked keep cannot be reused: the new
// object declares it differently.
var ErrIncompatibleMap = errors.New("pinned map is incompatible with the new object")

// Options tune Apply.
type Options struct {
	// Root is the pin directory; DefaultRoot if empty.
	Root string
	// Prune removes objects below Root that no manifest names any more.
	Prune bool
	// Hook, if set, is called after each step of building or swapping a
	// tree, with the step's name. Tests use it to kill Apply at each step.
	Hook func(step string)
}

func (o *Options) root() string {
	if o.Root == "" {
		return DefaultRoot
	}
	return o.Root
}

func (o *Options) step(s string) {
	if o.Hook != nil {
		o.Hook(s)
	}
}

// Action says what Apply did with one object.
type Action string

// The actions of Apply.
const (
	Unchanged Action = "unchanged"
	Created   Action = "created"
	Replaced  Action = "replaced"
	Removed   Action = "removed"
	Failed    Action = "failed"
)

// Result is what Apply did with one object.
type Result struct {
	Name   string `json:"name"`
	Action Action `json:"action"`
	// Why says why an object was rebuilt, or why it failed.
	Why string `json:"why,omitempty"`
	// Kept are the maps whose pinned instance (and data) was reused.
	Kept     []string      `json:"kept,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Plan is a checked manifest with its parsed object.
type Plan struct {
	*Manifest
	Spec *ebpf.CollectionSpec
}

// Check parses each manifest's object and checks every program, map and
// attach target the manifest names. Nothing is loaded into the kernel.
func Check(ms []*Manifest) ([]Plan, error) {
	out := make([]Plan, 0, len(ms))
	for _, m := range ms {
		spec, err := loadSpec(m)
		if err != nil {
			return nil, err
		}
		for i := range m.Programs {
			p := &m.Programs[i]
			ps, ok := spec.Programs[p.Name]
			if !ok {
				return nil, m.errorf("programs."+p.Name+".name", "no program %q in %s (it has: %s)",
					p.Name, filepath.Base(m.Object), strings.Join(slices.Sorted(maps.Keys(spec.Programs)), ", "))
			}
			if err := m.resolve(i, ps); err != nil {
				return nil, err
			}
		}
		for _, mp := range m.Maps {
			if _, ok := spec.Maps[mp.Name]; !ok {
				return nil, m.errorf("maps."+mp.Name+".name", "no map %q in %s (it has: %s)",
					mp.Name, filepath.Base(m.Object), strings.Join(slices.Sorted(maps.Keys(spec.Maps)), ", "))
			}
		}
		out = append(out, Plan{m, spec})
	}
	return out, nil
}

// pinName is the name a map gets in maps/: bpffs refuses dots, which the
// data section maps (.rodata, .bss) have.
func pinName(name string) string {
	return strings.ReplaceAll(strings.TrimLeft(name, "."), ".", "_")
}

// Apply makes the pinned objects below the root match the manifests, in
// their order. Manifests of unchanged objects whose pins are intact are not
// even parsed further; the others are checked together first, so a bad
// manifest stops Apply before anything is loaded. An object that fails to
// load does not stop the others; the error reports every failure.
func Apply(ms []*Manifest, opts Options) ([]Result, error) {
	// The root is opened once; every pin, rename and removal below goes
	// through its fd, so renaming a directory above it cannot redirect them.
	root, err := ensureRoot(opts.root())
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if err := lock(root); err != nil {
		return nil, err
	}
	// Under the lock, any staging tree is a dead Apply's: it may hold links
	// still attached, so it goes before anything else.
	if err := clearStaging(root); err != nil {
		return nil, err
	}
	opts.step("cleared-staging")

	results := make([]Result, len(ms))
	var todo []*Manifest
	for i, m := range ms {
		results[i] = Result{Name: m.Name}
		if why := stale(root, m); why != "" {
			results[i].Why = why
			todo = append(todo, m)
		} else {
			results[i].Action = Unchanged
		}
	}
	plans, err := Check(todo)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, j := 0, 0; i < len(ms); i++ {
		if results[i].Action == Unchanged {
			continue
		}
		start := time.Now()
		r, err := build(root, plans[j], opts)
		j++
		r.Duration = time.Since(start)
		if r.Why == "" {
			r.Why = results[i].Why
		}
		results[i] = r
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ms[i].Name, err))
		}
	}
	if opts.Prune {
		pruned, err := prune(root, ms)
		results = append(results, pruned...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return results, errors.Join(errs...)
}

// SystemBPFFS is where systemd mounts the system's bpffs at boot.
const SystemBPFFS = delegate.DefaultPath

// systemRoot says whether root is below /sys/fs/bpf, where bpfgate may
// mount the system's bpffs when nothing is mounted there.
func systemRoot(root string) bool {
	return strings.HasPrefix(filepath.Clean(root)+"/", SystemBPFFS+"/")
}

// ensureRoot creates and opens the root and creates its staging directory.
// When the root is below /sys/fs/bpf and no bpffs is mounted there (a
// machine without systemd), it mounts one first, mode 0700 as systemd
// does, like bpftool does before it pins.
func ensureRoot(root string) (*pins.Dir, error) {
	d, err := pins.OpenDir(root, pins.OpenOptions{Create: true})
	if errors.Is(err, pins.ErrNotBPFFS) && systemRoot(root) {
		mode := uint32(0o700)
		if merr := bpffs.Mount(SystemBPFFS, bpffs.Options{Mode: &mode}); merr != nil {
			return nil, fmt.Errorf("pin root %s: %w; mounting a bpffs on %s failed too: %w", root, err, SystemBPFFS, merr)
		}
		d, err = pins.OpenDir(root, pins.OpenOptions{Create: true})
	}
	if err != nil {
		return nil, fmt.Errorf("pin root: %w", err)
	}
	if err := d.MkdirAll(stagingDir); err != nil {
		d.Close()
		return nil, fmt.Errorf("pin root: %w", err)
	}
	return d, nil
}

// lock serialises Applies on one root: flock works on a bpffs directory.
// Closing root releases the lock.
func lock(root *pins.Dir) error {
	if err := unix.Flock(root.FD(), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", root.Path(), err)
	}
	return nil
}

// stale says why the object's tree must be (re)built, or "" if it is
// intact and built from these exact manifest and object bytes.
func stale(root *pins.Dir, m *Manifest) string {
	dir := m.Name
	got, err := root.Readlink(filepath.Join(dir, digestLink))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "not applied"
	case err != nil:
		return err.Error()
	case got != m.Digest:
		return "manifest or object changed"
	}
	for _, p := range m.Programs {
		if p.Attach == AttachNone {
			continue
		}
		if why := linkBroken(root, filepath.Join(dir, "links", p.Name)); why != "" {
			return fmt.Sprintf("link %s %s", p.Name, why)
		}
	}
	for _, mp := range m.Maps {
		if _, err := root.Lstat(filepath.Join(dir, "maps", pinName(mp.Name))); err != nil {
			return fmt.Sprintf("map %s is not pinned", mp.Name)
		}
	}
	return ""
}

// loadLink opens the link pinned at name below root.
func loadLink(root *pins.Dir, name string) (link.Link, error) {
	obj, err := root.Load(name, nil)
	if err != nil {
		return nil, err
	}
	l, ok := obj.(link.Link)
	if !ok {
		obj.Close()
		return nil, fmt.Errorf("%s: not a link", filepath.Join(root.Path(), name))
	}
	return l, nil
}

// linkBroken says what is wrong with a pinned link, or "".
func linkBroken(root *pins.Dir, name string) string {
	l, err := loadLink(root, name)
	if err != nil {
		return "is not pinned"
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	// A netdev link whose interface went away is defunct: ifindex 0.
	if (info.XDP() != nil && info.XDP().Ifindex == 0) || (info.TCX() != nil && info.TCX().Ifindex == 0) {
		return "lost its interface"
	}
	return ""
}

// build loads one object into a staging tree and swaps it in.
func build(root *pins.Dir, plan Plan, opts Options) (res Result, err error) {
	m, spec := plan.Manifest, plan.Spec.Copy()
	res = Result{Name: m.Name, Action: Created}
	final := m.Name
	staging := filepath.Join(stagingDir, m.Name)
	defer func() {
		if err != nil {
			res.Action, res.Why = Failed, err.Error()
		}
	}()

	// A staging tree left by a killed Apply holds nothing anyone needs; its
	// links go with it.
	if err := removeIfExists(root, staging); err != nil {
		return res, err
	}
	opts.step("cleaned")
	_, statErr := root.Lstat(final)
	old := statErr == nil
	if old {
		res.Action = Replaced
	}

	// Maps to keep: the pinned instance replaces the one the object declares.
	replacements := map[string]*ebpf.Map{}
	defer func() {
		for _, mp := range replacements {
			mp.Close()
		}
	}()
	for _, mp := range m.Maps {
		if !mp.Keep || !old {
			continue
		}
		obj, err := root.Load(filepath.Join(final, "maps", pinName(mp.Name)), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("map %s: %w", mp.Name, err)
		}
		pinned, ok := obj.(*ebpf.Map)
		if !ok {
			obj.Close()
			return res, fmt.Errorf("map %s: the pin holds a %T, not a map", mp.Name, obj)
		}
		if err := spec.Maps[mp.Name].Compatible(pinned); err != nil {
			pinned.Close()
			return res, fmt.Errorf("map %s: %w: %v; drop keep, or remove object %s first (its data will be lost)",
				mp.Name, ErrIncompatibleMap, err, m.Name)
		}
		replacements[mp.Name] = pinned
		res.Kept = append(res.Kept, mp.Name)
	}
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone // bpfgate pins, not the loader
	}
	// Only the programs the manifest lists are loaded: an object may carry
	// programs for hooks this kernel lacks.
	for name := range spec.Programs {
		if !slices.ContainsFunc(m.Programs, func(p Program) bool { return p.Name == name }) {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replacements})
	if errors.Is(err, unix.EPERM) && os.Geteuid() == 0 {
		// cilium/ebpf's hint names MEMLOCK, which has not counted since 5.11.
		return res, fmt.Errorf("load %s: %w; for root, EPERM usually means a lockdown LSM refusing this program type (see /sys/kernel/security/lockdown)", m.Object, err)
	}
	if err != nil {
		return res, fmt.Errorf("load %s: %w", m.Object, err)
	}
	defer coll.Close()
	opts.step("loaded")

	for _, sub := range []string{"maps", "progs", "links"} {
		if err := root.MkdirAll(filepath.Join(staging, sub)); err != nil {
			return res, err
		}
	}
	// On failure before the swap, the staging tree goes, and with it every
	// link attached for it.
	swapped := false
	var updated []updatedLink
	defer func() {
		if err != nil && !swapped {
			rollback(root, final, updated)
			_ = removeIfExists(root, staging)
		}
	}()
	for _, name := range slices.Sorted(maps.Keys(coll.Maps)) {
		if err := root.Pin(coll.Maps[name].FD(), filepath.Join(staging, "maps", pinName(name)), pins.PinOptions{}); err != nil {
			return res, err
		}
	}
	opts.step("pinned-maps")
	for _, name := range slices.Sorted(maps.Keys(coll.Programs)) {
		if err := root.Pin(coll.Programs[name].FD(), filepath.Join(staging, "progs", name), pins.PinOptions{}); err != nil {
			return res, err
		}
	}
	opts.step("pinned-progs")

	for i := range m.Programs {
		p := &m.Programs[i]
		if p.Attach == AttachNone {
			continue
		}
		prog := coll.Programs[p.Name]
		linkPath := filepath.Join(staging, "links", p.Name)
		if old && updatable(p.Attach) {
			ok, err := updateInPlace(root, filepath.Join(final, "links", p.Name), linkPath, p, prog)
			if err != nil {
				return res, fmt.Errorf("program %s: %w", p.Name, err)
			}
			if ok {
				updated = append(updated, updatedLink{p.Name})
				opts.step("updated:" + p.Name)
				continue
			}
		}
		l, err := attach(p, spec.Programs[p.Name], prog)
		if err != nil {
			return res, fmt.Errorf("attach %s as %s: %w", p.Name, p.Attach, err)
		}
		opts.step("attached:" + p.Name)
		err = pinLink(root, l, linkPath)
		l.Close()
		if err != nil {
			return res, fmt.Errorf("pin link %s: %w", p.Name, err)
		}
		opts.step("pinned-link:" + p.Name)
	}

	// The digest goes last: a tree is complete once it has one.
	if err := root.Symlink(m.Digest, filepath.Join(staging, digestLink)); err != nil {
		return res, err
	}
	opts.step("digest")
	if old {
		err = root.Rename(staging, final, pins.RenameOptions{Exchange: true})
	} else {
		err = root.Rename(staging, final, pins.RenameOptions{})
	}
	if err != nil {
		return res, err
	}
	swapped = true
	opts.step("swapped")
	if old {
		// The old tree now sits in staging; its links that were not updated
		// in place detach as their pins go.
		if err := removeIfExists(root, staging); err != nil {
			return res, fmt.Errorf("remove the replaced tree (the next apply retries): %w", err)
		}
		opts.step("removed-old")
	}
	return res, nil
}

type updatedLink struct{ prog string }

// pinLink pins l at name below root.
func pinLink(root *pins.Dir, l link.Link, name string) error {
	fl, ok := l.(interface{ FD() int })
	if !ok {
		return fmt.Errorf("link %T has no fd", l)
	}
	return root.Pin(fl.FD(), name, pins.PinOptions{})
}

// updateInPlace points the pinned link at oldPath, if it is attached where p
// wants, to prog, and pins it at newPath too. It reports false when there
// is no such link.
func updateInPlace(root *pins.Dir, oldPath, newPath string, p *Program, prog *ebpf.Program) (bool, error) {
	l, err := loadLink(root, oldPath)
	if err != nil {
		return false, nil
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil || !sameTarget(p, info) {
		return false, nil
	}
	if err := l.Update(prog); err != nil {
		return false, fmt.Errorf("update link in place: %w", err)
	}
	return true, pinLink(root, l, newPath)
}

// rollback points links updated in place back at the old tree's programs,
// so a failed replacement leaves the old object running as it was.
func rollback(root *pins.Dir, final string, updated []updatedLink) {
	for _, u := range updated {
		l, err := loadLink(root, filepath.Join(final, "links", u.prog))
		if err != nil {
			continue
		}
		if obj, err := root.Load(filepath.Join(final, "progs", u.prog), nil); err == nil {
			if prog, ok := obj.(*ebpf.Program); ok {
				_ = l.Update(prog)
			}
			obj.Close()
		}
		l.Close()
	}
}

func removeIfExists(root *pins.Dir, name string) error {
	if _, err := root.Lstat(name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return root.Unpin(name, pins.UnpinOptions{Recursive: true})
}

// Remove unpins an object's tree (and any staging tree it left); its links
// detach and its maps and programs are freed unless something else holds
// them.
func Remove(name string, opts Options) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("object name: %w", err)
	}
	root, err := pins.OpenDir(opts.root(), pins.OpenOptions{})
	if err != nil {
		return err
	}
	defer root.Close()
	if err := lock(root); err != nil {
		return err
	}
	if _, err := root.Lstat(name); errors.Is(err, os.ErrNotExist) {
		if _, err := root.Lstat(filepath.Join(stagingDir, name)); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w (bpfgate preload status lists what is applied)", filepath.Join(root.Path(), name), os.ErrNotExist)
		}
	}
	if err := removeIfExists(root, filepath.Join(stagingDir, name)); err != nil {
		return err
	}
	return removeIfExists(root, name)
}

func clearStaging(root *pins.Dir) error {
	names, err := root.ReadDir(stagingDir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeIfExists(root, filepath.Join(stagingDir, n)); err != nil {
			return fmt.Errorf("remove a tree a killed apply left: %w", err)
		}
	}
	return nil
}

// prune removes trees no manifest names.
func prune(root *pins.Dir, ms []*Manifest) ([]Result, error) {
	named := map[string]bool{}
	for _, m := range ms {
		named[m.Name] = true
	}
	var out []Result
	var errs []error
	names, err := root.ReadDir(".")
	if err != nil {
		return out, err
	}
	for _, n := range names {
		if n == stagingDir || named[n] {
			continue
		}
		start := time.Now()
		err := removeIfExists(root, n)
		r := Result{Name: n, Action: Removed, Why: "no manifest", Duration: time.Since(start)}
		if err != nil {
			r.Action, r.Why = Failed, err.Error()
			errs = append(errs, err)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
