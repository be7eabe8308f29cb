package preload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/pins"
	"github.com/bpfgate/bpfgate/profile"
)

// DefaultDir holds the manifests Apply reads by default.
const DefaultDir = "/etc/bpfgate/preload.d"

// DefaultOrder is the order of a manifest that gives none.
const DefaultOrder = 100

// Errors a caller can test with errors.Is.
var (
	// ErrManifest means a manifest is malformed or names something that
	// does not exist. The *ManifestError says where.
	ErrManifest = errors.New("bad manifest")
	// ErrDuplicate means two manifests (or two entries of one) share a name.
	ErrDuplicate = errors.New("duplicate name")
	// ErrEscape means a name would place pins outside the object's
	// directory: the same error as pins.ErrEscape.
	ErrEscape = pins.ErrEscape
)

// ManifestError points at the file, line and key of a bad manifest; it
// matches ErrManifest.
type ManifestError = profile.ConfigError

func manifestError(file string, line int, key string, err error) error {
	return &ManifestError{Path: file, Line: line, Key: key, Err: err, Kind: ErrManifest}
}

// Manifest is one object to preload.
type Manifest struct {
	// Name names the object's pin directory; by default the file's name
	// without .yaml.
	Name string `json:"name"`
	// File is the manifest's path.
	File string `json:"file"`
	// Object is the BPF ELF object's path; relative paths in the file are
	// taken from the manifest's directory.
	Object string `json:"object"`
	// Order sorts manifests: lower first, then by name.
	Order    int       `json:"order"`
	Programs []Program `json:"programs,omitempty"`
	Maps     []Map     `json:"maps,omitempty"`
	// Digest identifies the manifest and object bytes together.
	Digest string `json:"digest"`

	lines map[string]int // key -> line, for errors found after parsing
}

// Program says where to attach one program of the object. Only the
// programs a manifest lists are loaded; attach: none pins one unattached.
type Program struct {
	Name string `json:"name" yaml:"name"`
	// Attach is the kind of hook: xdp, tcx, tracepoint, kprobe, kretprobe,
	// fentry, fexit, fmod_ret, lsm, cgroup, iter, or none. Empty means:
	// infer it from the program's section.
	Attach Attach `json:"attach,omitempty" yaml:"attach"`
	// Interface is the network interface of xdp and tcx.
	Interface string `json:"interface,omitempty" yaml:"interface"`
	// Direction is ingress or egress, for tcx.
	Direction string `json:"direction,omitempty" yaml:"direction"`
	// Target is the tracepoint (group/name), the kprobe's function, or the
	// function an fentry/fexit program traces; by default the section's.
	Target string `json:"target,omitempty" yaml:"target"`
	// Cgroup is the cgroup v2 directory of a cgroup program.
	Cgroup string `json:"cgroup,omitempty" yaml:"cgroup"`
}

// Map says what happens to one map of the object.
type Map struct {
	Name string `json:"name" yaml:"name"`
	// Keep reuses the pinned map, and so its data, when the object is
	// replaced, as long as its type and sizes are unchanged.
	Keep bool `json:"keep,omitempty" yaml:"keep"`
}

// validName is what a manifest, program or map name may be: bpffs refuses
// names with a dot, and a slash would leave the object's directory. (A
// loop, not a regexp: compiling `{1,64}` at init cost every bpfgate start,
// the OCI hook's included, 0.2 ms.)
func validName(name string) bool {
	if len(name) < 1 || len(name) > 64 {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

var (
	manifestKeys = []string{"name", "object", "order", "programs", "maps"}
	programKeys  = []string{"name", "attach", "interface", "direction", "target", "cgroup"}
	mapKeys      = []string{"name", "keep"}
)

// ReadDir reads every *.yaml manifest in dir, sorted by order and name. It
// checks syntax, names and duplicates; Check looks into the objects.
func ReadDir(dir string) ([]*Manifest, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("manifest directory: %w", err)
	}
	var out []*Manifest
	seen := map[string]string{}
	for _, f := range files {
		m, err := ReadFile(f)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[m.Name]; ok {
			return nil, manifestError(f, m.lines["name"], "name",
				fmt.Errorf("%w: %q is also the name of %s", ErrDuplicate, m.Name, prev))
		}
		seen[m.Name] = f
		out = append(out, m)
	}
	Sort(out)
	return out, nil
}

// Sort orders manifests as Apply handles them: by order, then name.
func Sort(ms []*Manifest) {
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].Order != ms[j].Order {
			return ms[i].Order < ms[j].Order
		}
		return ms[i].Name < ms[j].Name
	})
}

// ReadFile reads and checks one manifest. The object's bytes go into the
// digest, so a missing object is an error here already.
func ReadFile(path string) (*Manifest, error) {
	data, err := boundedio.ReadFile(path, MaxManifestSize)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrManifest, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, manifestError(path, 1, "", errors.New("want a mapping with at least 'object'"))
	}
	root := doc.Content[0]
	m := &Manifest{File: path, Order: DefaultOrder, lines: map[string]int{"": root.Line}}
	if err := checkKeys(path, root, "", manifestKeys); err != nil {
		return nil, err
	}
	var raw struct {
		Name     string      `yaml:"name"`
		Object   string      `yaml:"object"`
		Order    *int        `yaml:"order"`
		Programs []yaml.Node `yaml:"programs"`
		Maps     []yaml.Node `yaml:"maps"`
	}
	if err := root.Decode(&raw); err != nil {
		return nil, manifestError(path, root.Line, "", err)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		m.lines[root.Content[i].Value] = root.Content[i].Line
	}
	m.Name = raw.Name
	if m.Name == "" {
		m.Name = strings.TrimSuffix(filepath.Base(path), ".yaml")
	}
	if err := checkName(m.Name); err != nil {
		return nil, manifestError(path, m.lines["name"], "name", err)
	}
	if raw.Order != nil {
		m.Order = *raw.Order
	}
	if raw.Object == "" {
		return nil, manifestError(path, root.Line, "object", errors.New("missing: give the path of a BPF ELF object"))
	}
	m.Object = raw.Object
	if !filepath.IsAbs(m.Object) {
		m.Object = filepath.Join(filepath.Dir(path), m.Object)
	}
	if m.Programs, err = decodeEntries(m, raw.Programs, "programs", "program", programKeys,
		func(p Program) string { return p.Name }); err != nil {
		return nil, err
	}
	if m.Maps, err = decodeEntries(m, raw.Maps, "maps", "map", mapKeys,
		func(mp Map) string { return mp.Name }); err != nil {
		return nil, err
	}
	obj, c, err := openObject(m)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	h := sha256.New()
	h.Write(data)
	h.Write([]byte{0})
	if _, err := io.Copy(h, obj); err != nil {
		return nil, manifestError(path, m.lines["object"], "object", err)
	}
	m.Digest = "sha256-" + hex.EncodeToString(h.Sum(nil))
	return m, nil
}

// decodeEntries decodes the list section of a manifest (programs, maps):
// known keys only, valid and distinct names, each name's line recorded.
func decodeEntries[T any](m *Manifest, nodes []yaml.Node, section, noun string, keys []string, name func(T) string) ([]T, error) {
	var out []T
	seen := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		key := fmt.Sprintf("%s[%d]", section, i)
		if err := checkKeys(m.File, n, key, keys); err != nil {
			return nil, err
		}
		var e T
		if err := n.Decode(&e); err != nil {
			return nil, manifestError(m.File, n.Line, key, err)
		}
		if err := checkName(name(e)); err != nil {
			return nil, manifestError(m.File, n.Line, key+".name", err)
		}
		if seen[name(e)] {
			return nil, manifestError(m.File, n.Line, key+".name", fmt.Errorf("%w: %s %q is listed twice", ErrDuplicate, noun, name(e)))
		}
		seen[name(e)] = true
		m.lines[section+"."+name(e)] = n.Line
		out = append(out, e)
	}
	return out, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("missing")
	case strings.Contains(name, "/") || strings.Contains(name, ".."):
		return fmt.Errorf("%w: %q may not contain / or ..", ErrEscape, name)
	case !validName(name):
		return fmt.Errorf("%q: want letters, digits, _ and - (bpffs refuses dots), at most 64", name)
	}
	return nil
}

func checkKeys(file string, n *yaml.Node, prefix string, known []string) error {
	if n.Kind != yaml.MappingNode {
		return manifestError(file, n.Line, prefix, errors.New("want a mapping"))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			key := k.Value
			if prefix != "" {
				key = prefix + "." + key
			}
			return manifestError(file, k.Line, key, fmt.Errorf("unknown key (want one of %s)", strings.Join(known, ", ")))
		}
	}
	return nil
}

// line is where key was in the file, for errors found after parsing.
func (m *Manifest) line(key string) int {
	if l, ok := m.lines[key]; ok {
		return l
	}
	return m.lines[""]
}

func (m *Manifest) errorf(key string, format string, args ...any) error {
	lineKey := key
	if i := strings.IndexByte(key, '.'); i >= 0 && strings.Count(key, ".") > 1 {
		lineKey = key[:strings.LastIndexByte(key, '.')]
	}
	return manifestError(m.File, m.line(lineKey), key, fmt.Errorf(format, args...))
}
