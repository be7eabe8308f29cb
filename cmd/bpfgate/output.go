package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/pins"
	"github.com/bpfgate/bpfgate/preload"
	"github.com/bpfgate/bpfgate/profile"
)

// JSON output follows bpftool's conventions: -j prints one compact line,
// -p pretty-prints (and implies -j), keys and flat shapes are bpftool's
// where bpftool reports the same thing, names are arrays, and an error is
// {"error": "..."} on stdout with a non-zero exit. docs/json.md is the
// schema.

// jsonOut says whether the command prints JSON.
func (g *globals) jsonOut() bool { return g.json || g.pretty }

// printJSON writes v to stdout as JSON.
func (g *globals) printJSON(v any) error {
	return writeJSON(os.Stdout, v, g.pretty)
}

// writeJSON writes v and a newline: compact, or indented by four spaces as
// bpftool -p does. HTML is not escaped: paths and names stay readable.
func writeJSON(w io.Writer, v any, pretty bool) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if pretty {
		enc.SetIndent("", "    ")
	}
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// errorJSON is how an error is reported under --json, as bpftool does.
type errorJSON struct {
	Error string `json:"error"`
}

// printedNull is what bpftool prints under -j for a command that reports
// nothing: a valid JSON document all the same.
func (g *globals) printNull() error {
	if !g.jsonOut() {
		return nil
	}
	return g.printJSON(nil)
}

// reported is an error the command has already put in its JSON output (a
// failed object in a per-object array): execute exits non-zero without
// printing it again.
type reported struct{ err error }

func (r reported) Error() string { return r.err.Error() }
func (r reported) Unwrap() error { return r.err }

// wantsJSON says whether args ask for JSON; for errors cobra reports before
// it has parsed the flags (an unknown flag or command). A lone -p is left
// out: on pin it means --parents.
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-j", "--json", "--json=true", "--pretty", "--pretty=true", "-jp", "-pj":
			return true
		}
	}
	return false
}

// allowedJSON is a delegation as bpftool's `token list` prints one: each
// kind's names as the kernel shows them in the mount options ("any" when
// every known bit is set, hex for bits without a name), as arrays.
type allowedJSON struct {
	Cmds    []string `json:"allowed_cmds"`
	Maps    []string `json:"allowed_maps"`
	Progs   []string `json:"allowed_progs"`
	Attachs []string `json:"allowed_attachs"`
}

func allowedOf(names *delegate.Names, s delegate.Set) allowedJSON {
	var lists [4][]string
	for _, k := range delegate.Kinds {
		lists[k] = []string{}
		if v := names.FormatMask(k, s.Mask(k)); v != "" {
			lists[k] = strings.Split(v, ":")
		}
	}
	return allowedJSON{lists[delegate.Cmds], lists[delegate.Maps], lists[delegate.Progs], lists[delegate.Attachs]}
}

// list returns the names of kind k.
func (a allowedJSON) list(k delegate.Kind) []string {
	return [...][]string{a.Cmds, a.Maps, a.Progs, a.Attachs}[k]
}

// tokenShowJSON is one bpffs in `token show`: bpftool's token list entry
// (token_info is the mount point, as there), then what bpfgate adds.
type tokenShowJSON struct {
	Path string `json:"token_info"`
	allowedJSON
	Options string `json:"options"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	// Mode is the octal mode of the mount's root, sticky bit included.
	Mode  string         `json:"mode"`
	Token *tokenInfoJSON `json:"token,omitempty"`
	// TokenError says why no token could be made from the mount.
	TokenError string `json:"token_error,omitempty"`
}

// tokenInfoJSON is what a token made from the mount says it allows.
type tokenInfoJSON struct {
	Source string `json:"source"` // obj_info or fdinfo
	allowedJSON
	Options string `json:"options"`
}

// checkJSON is the output of `check`.
type checkJSON struct {
	Options string `json:"options"`
	allowedJSON
	Warnings []delegate.Warning `json:"warnings"`
}

// namesJSON is the output of `names`: the names the kernel accepts, by kind.
type namesJSON struct {
	Source  string   `json:"source"`
	Release string   `json:"release,omitempty"`
	Cmds    []string `json:"cmds,omitempty"`
	Maps    []string `json:"maps,omitempty"`
	Progs   []string `json:"progs,omitempty"`
	Attachs []string `json:"attachs,omitempty"`
}

// profilesJSON is the output of `profiles`.
type profilesJSON struct {
	Config   string        `json:"config"`
	Builtin  bool          `json:"builtin"` // no config file: the built-in profiles apply
	Profiles []profileJSON `json:"profiles"`
}

// profileJSON is one profile, resolved with the running kernel's names.
type profileJSON struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Source      string `json:"source,omitempty"`
	Builtin     bool   `json:"builtin"`
	Options     string `json:"options"`
	allowedJSON
	// Skipped are names of a built-in profile this kernel does not know.
	Skipped []string `json:"skipped,omitempty"`
	Caps    []string `json:"caps"`
	Path    string   `json:"path"`
	UID     *uint32  `json:"uid,omitempty"`
	GID     *uint32  `json:"gid,omitempty"`
	Mode    string   `json:"mode,omitempty"`
	// Audit is where the OCI hook records the profile's containers.
	Audit string `json:"audit,omitempty"`
	// K8sNamespaces are the only Kubernetes namespaces whose pods may
	// have the profile.
	K8sNamespaces []string `json:"k8s_namespaces,omitempty"`
}

func profileOf(names *delegate.Names, p profile.Profile, set delegate.Set, skipped []string) profileJSON {
	v := profileJSON{Name: p.Name, Description: p.Description, Source: p.Source, Builtin: p.Builtin,
		Options: names.FormatOptions(set), allowedJSON: allowedOf(names, set), Skipped: skipped,
		Caps: p.Caps, Path: p.BPFFSPath(), UID: p.UID, GID: p.GID, Audit: p.Audit, K8sNamespaces: p.K8sNamespaces}
	if v.Caps == nil {
		v.Caps = []string{}
	}
	if p.Mode != nil {
		v.Mode = octalMode(*p.Mode)
	}
	return v
}

// octalMode prints permission bits as stat's %a does, with at least four
// digits: 1777, 0700.
func octalMode(m uint32) string { return fmt.Sprintf("%04o", m&0o7777) }

// The shapes of `ls` entries: bpftool's map, prog and link show keys for
// what bpftool shows too, in its order, and path and kind first.
type entryHead struct {
	Path string `json:"path"`
	Kind string `json:"kind,omitempty"`
	ID   uint32 `json:"id,omitempty"`
	Type string `json:"type,omitempty"`
	Name string `json:"name,omitempty"`
	// Error says why the object behind the pin could not be read.
	Error string `json:"error,omitempty"`
}

type mapJSON struct {
	entryHead
	Flags      uint32 `json:"flags"`
	BytesKey   uint32 `json:"bytes_key"`
	BytesValue uint32 `json:"bytes_value"`
	MaxEntries uint32 `json:"max_entries"`
}

type progJSON struct {
	entryHead
	Tag string `json:"tag"`
	// Attached: a BPF link holds the program; LinkIDs are those links.
	Attached bool     `json:"attached"`
	LinkIDs  []uint32 `json:"link_ids"`
}

type linkJSON struct {
	entryHead
	ProgID     uint32  `json:"prog_id"`
	Devname    string  `json:"devname,omitempty"`
	Ifindex    *uint32 `json:"ifindex,omitempty"` // 0: detached
	CgroupID   uint64  `json:"cgroup_id,omitempty"`
	AttachType string  `json:"attach_type,omitempty"`
	TargetName string  `json:"target_name,omitempty"` // iter
	TpName     string  `json:"tp_name,omitempty"`     // raw_tracepoint
	Tracepoint string  `json:"tracepoint,omitempty"`  // perf_event
	Func       string  `json:"func,omitempty"`        // perf_event kprobe
	File       string  `json:"file,omitempty"`        // perf_event uprobe
	// Target describes, for people, an attachment bpftool shows in keys
	// bpfgate does not read (netns, tracing, kprobe_multi).
	Target string `json:"target,omitempty"`
}

type symlinkJSON struct {
	entryHead
	Target string `json:"target"`
}

// entryOf gives the JSON shape of an ls entry.
func entryOf(e *pins.Entry) any {
	h := entryHead{Path: e.Path, Kind: string(e.Kind), ID: e.ID, Type: e.Type, Name: e.Name, Error: e.Error}
	switch {
	case e.Map != nil:
		return mapJSON{h, e.Map.Flags, e.Map.KeySize, e.Map.ValueSize, e.Map.MaxEntries}
	case e.Program != nil:
		ids := e.Program.Links
		if ids == nil {
			ids = []uint32{}
		}
		return progJSON{h, e.Program.Tag, e.Program.Attached, ids}
	case e.Link != nil:
		return linkOf(h, e.Link)
	case e.Kind == pins.KindSymlink && e.Error == "":
		return symlinkJSON{h, e.Target}
	}
	return h
}

func linkOf(h entryHead, d *pins.LinkDetails) linkJSON {
	l := linkJSON{entryHead: h, ProgID: d.ProgramID, CgroupID: d.CgroupID, AttachType: d.AttachType}
	switch h.Type {
	case "xdp", "tcx", "netkit":
		ifindex := d.Ifindex
		l.Ifindex = &ifindex
		// Target is the interface's name, unless it is detached or gone.
		if ifindex != 0 && d.Target != fmt.Sprintf("ifindex %d", ifindex) {
			l.Devname = d.Target
		}
	case "iter":
		l.TargetName = d.Target
	case "raw_tracepoint":
		l.TpName = d.Target
	case "cgroup":
		// cgroup_id says it.
	case "perf_event":
		if v, ok := strings.CutPrefix(d.Target, "tracepoint "); ok {
			l.Tracepoint = v
		} else if v, ok := strings.CutPrefix(d.Target, "kprobe "); ok {
			l.Func = v
		} else if v, ok := strings.CutPrefix(d.Target, "uprobe "); ok {
			l.File = v
		} else {
			l.Target = d.Target
		}
	default:
		l.Target = d.Target
	}
	return l
}

// applyJSON is one object of `preload apply` and `preload remove`.
type applyJSON struct {
	Name   string         `json:"name"`
	Action preload.Action `json:"action"`
	// Why says why an object was rebuilt or removed.
	Why string `json:"why,omitempty"`
	// Error says why it failed (action failed).
	Error string `json:"error,omitempty"`
	// Kept are the maps whose pinned instance and data were reused.
	Kept       []string `json:"kept,omitempty"`
	DurationNS int64    `json:"duration_ns"`
}

func applyOf(rs []preload.Result) []applyJSON {
	out := make([]applyJSON, 0, len(rs))
	for _, r := range rs {
		v := applyJSON{Name: r.Name, Action: r.Action, Why: r.Why, Kept: r.Kept, DurationNS: r.Duration.Nanoseconds()}
		if r.Action == preload.Failed {
			v.Why, v.Error = "", r.Why
		}
		out = append(out, v)
	}
	return out
}

// statusJSON is one object of `preload status`; its pins have ls's shape.
type statusJSON struct {
	Name     string `json:"name"`
	Order    int    `json:"order"`
	State    string `json:"state"`
	Why      string `json:"why,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	Pins     []any  `json:"pins"`
}

func statusOf(states []preload.State) []statusJSON {
	out := make([]statusJSON, 0, len(states))
	for _, s := range states {
		v := statusJSON{Name: s.Name, Order: s.Order, State: s.State, Why: s.Why, Manifest: s.Manifest, Pins: []any{}}
		for _, e := range s.Pins {
			v.Pins = append(v.Pins, entryOf(e))
		}
		out = append(out, v)
	}
	return out
}
