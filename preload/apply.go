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

// reserved says whether a name below the root is bpfgate's own rather than
// an object's: @staging, and @guard where preload/guard pins itself. No
// manifest name has an @.
func reserved(name string) bool { return strings.HasPrefix(name, "@") }

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
// even parsed further. Each object succeeds or fails on its own: a manifest
// whose object, programs or attach targets fail Check, or an object that
// fails to load or attach, leaves its old tree (if any) running and does not
// stop the others. Apply then returns a Result for every manifest (Failed,
// with Why, for those) and an error joining the failures. Only an error
// that concerns the root as a whole (it cannot be opened or locked) comes
// with no results.
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
	var errs []error
	for i, m := range ms {
		why := stale(root, m)
		if why == "" {
			results[i] = Result{Name: m.Name, Action: Unchanged}
			continue
		}
		start := time.Now()
		r, err := checkAndBuild(root, m, opts)
		r.Duration = time.Since(start)
		if r.Why == "" {
			r.Why = why
		}
		results[i] = r
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
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

// checkAndBuild checks one manifest and builds its tree.
func checkAndBuild(root *pins.Dir, m *Manifest, opts Options) (Result, error) {
	plans, err := Check([]*Manifest{m})
	if err != nil {
		return Result{Name: m.Name, Action: Failed, Why: err.Error()}, err
	}
	return build(root, plans[0], opts)
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
		if why := linkBroken(root, filepath.Join(dir, "links", p.Name), filepath.Join(dir, "progs", p.Name)); why != "" {
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

// linkBroken says what is wrong with a pinned link, or "". A link must run
// the program pinned beside it: an Apply killed after updating a link in
// place leaves it running the dead Apply's program.
func linkBroken(root *pins.Dir, name, progName string) string {
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
	want, err := pinnedProgramID(root, progName)
	if err != nil {
		return "has no pinned program: " + err.Error()
	}
	if info.Program != want {
		return fmt.Sprintf("runs program %d, not the pinned program %d", info.Program, want)
	}
	return ""
}

// pinnedProgramID is the kernel id of the program pinned at name.
func pinnedProgramID(root *pins.Dir, name string) (ebpf.ProgramID, error) {
	obj, err := root.Load(name, nil)
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	prog, ok := obj.(*ebpf.Program)
	if !ok {
		return 0, fmt.Errorf("%s: not a program", filepath.Join(root.Path(), name))
	}
	info, err := prog.Info()
	if err != nil {
		return 0, err
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("the kernel reports no program id")
	}
	return id, nil
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

	// clearStaging has removed what a killed Apply left; anything here now
	// would make the rename below fail.
	if err := discard(root, staging, final, true); err != nil {
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
	// link attached for it; links updated in place go back to the old
	// tree's programs, so the old object runs on as it was.
	swapped := false
	defer func() {
		if err != nil && !swapped {
			_ = discard(root, staging, final, true)
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
		// in place are detached and go.
		if err := discard(root, staging, final, false); err != nil {
			return res, fmt.Errorf("remove the replaced tree (the next apply retries): %w", err)
		}
		opts.step("removed-old")
	}
	return res, nil
}

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

// discard removes the tree at name. It first detaches the tree's links
// that the live tree does not also pin: the kernel releases a link whose
// pin goes only after an RCU grace period and a work item, and until then
// the link still holds its hook (an XDP one refuses a new link with EBUSY).
// Links shared with live were updated in place; with restore they are
// pointed back at live's programs, otherwise left alone. Hooks without
// BPF_LINK_DETACH (tracepoints, iterators) allow several links at once, so
// their links can go as their pins do.
func discard(root *pins.Dir, name, live string, restore bool) error {
	if _, err := root.Lstat(name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	shared := map[link.ID]string{}
	if live != "" {
		names, _ := root.ReadDir(filepath.Join(live, "links"))
		for _, n := range names {
			l, err := loadLink(root, filepath.Join(live, "links", n))
			if err != nil {
				continue
			}
			if info, err := l.Info(); err == nil {
				shared[info.ID] = n
			}
			l.Close()
		}
	}
	names, _ := root.ReadDir(filepath.Join(name, "links"))
	for _, n := range names {
		l, err := loadLink(root, filepath.Join(name, "links", n))
		if err != nil {
			continue
		}
		if info, err := l.Info(); err == nil {
			if prog, ok := shared[info.ID]; !ok {
				_ = l.Detach()
			} else if restore {
				restoreLink(root, l, filepath.Join(live, "progs", prog))
			}
		}
		l.Close()
	}
	return root.Unpin(name, pins.UnpinOptions{Recursive: true})
}

// restoreLink points l back at the program pinned at progName.
func restoreLink(root *pins.Dir, l link.Link, progName string) {
	obj, err := root.Load(progName, nil)
	if err != nil {
		return
	}
	defer obj.Close()
	if prog, ok := obj.(*ebpf.Program); ok {
		_ = l.Update(prog)
	}
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
	if err := discard(root, filepath.Join(stagingDir, name), "", false); err != nil {
		return err
	}
	return discard(root, name, "", false)
}

func clearStaging(root *pins.Dir) error {
	names, err := root.ReadDir(stagingDir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := discard(root, filepath.Join(stagingDir, n), n, true); err != nil {
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
		if reserved(n) || named[n] {
			continue
		}
		start := time.Now()
		err := discard(root, n, "", false)
		r := Result{Name: n, Action: Removed, Why: "no manifest", Duration: time.Since(start)}
		if err != nil {
			r.Action, r.Why = Failed, err.Error()
			errs = append(errs, err)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
