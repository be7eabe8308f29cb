package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/pins"
	"github.com/bpfgate/bpfgate/preload"
	"github.com/bpfgate/bpfgate/profile"
)

func marshal(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeJSON(&b, v, false); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// TestEntryShapes pins the ls shapes: bpftool's keys, flat, in its order.
func TestEntryShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    pins.Entry
		want string
	}{
		{"map", pins.Entry{Path: "/b/m", Kind: pins.KindMap, ID: 7, Type: "hash", Name: "counts",
			Map: &pins.MapDetails{KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: 0}},
			`{"path":"/b/m","kind":"map","id":7,"type":"hash","name":"counts","flags":0,"bytes_key":4,"bytes_value":8,"max_entries":16}`},
		{"prog attached", pins.Entry{Path: "/b/p", Kind: pins.KindProgram, ID: 9, Type: "xdp", Name: "count",
			Program: &pins.ProgramDetails{Tag: "b6cc127c4b816dbb", Attached: true, Links: []uint32{3, 4}}},
			`{"path":"/b/p","kind":"prog","id":9,"type":"xdp","name":"count","tag":"b6cc127c4b816dbb","attached":true,"link_ids":[3,4]}`},
		{"prog alone", pins.Entry{Path: "/b/p", Kind: pins.KindProgram, ID: 9, Type: "xdp",
			Program: &pins.ProgramDetails{Tag: "00"}},
			`{"path":"/b/p","kind":"prog","id":9,"type":"xdp","tag":"00","attached":false,"link_ids":[]}`},
		{"xdp link", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "xdp", Name: "count",
			Link: &pins.LinkDetails{ProgramID: 9, Ifindex: 1, Target: "lo"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"xdp","name":"count","prog_id":9,"devname":"lo","ifindex":1}`},
		{"xdp link detached", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "xdp",
			Link: &pins.LinkDetails{ProgramID: 9, Target: "detached"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"xdp","prog_id":9,"ifindex":0}`},
		{"tcx link, interface gone", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "tcx",
			Link: &pins.LinkDetails{ProgramID: 9, Ifindex: 40, AttachType: "tcx_ingress", Target: "ifindex 40"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"tcx","prog_id":9,"ifindex":40,"attach_type":"tcx_ingress"}`},
		{"cgroup link", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "cgroup",
			Link: &pins.LinkDetails{ProgramID: 9, CgroupID: 47544, AttachType: "cgroup_inet_ingress", Target: "cgroup id 47544"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"cgroup","prog_id":9,"cgroup_id":47544,"attach_type":"cgroup_inet_ingress"}`},
		{"iter link", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "iter",
			Link: &pins.LinkDetails{ProgramID: 9, Target: "bpf_map"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"iter","prog_id":9,"target_name":"bpf_map"}`},
		{"raw_tracepoint link", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "raw_tracepoint",
			Link: &pins.LinkDetails{ProgramID: 9, Target: "sched_switch"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"raw_tracepoint","prog_id":9,"tp_name":"sched_switch"}`},
		{"perf_event tracepoint link", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "perf_event",
			Link: &pins.LinkDetails{ProgramID: 9, Target: "tracepoint sys_enter_getppid"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"perf_event","prog_id":9,"tracepoint":"sys_enter_getppid"}`},
		{"netns link", pins.Entry{Path: "/b/l", Kind: pins.KindLink, ID: 3, Type: "netns",
			Link: &pins.LinkDetails{ProgramID: 9, AttachType: "flow_dissector", Target: "netns inode 4026531840"}},
			`{"path":"/b/l","kind":"link","id":3,"type":"netns","prog_id":9,"attach_type":"flow_dissector","target":"netns inode 4026531840"}`},
		{"symlink", pins.Entry{Path: "/b/digest", Kind: pins.KindSymlink, Target: "sha256-00"},
			`{"path":"/b/digest","kind":"symlink","target":"sha256-00"}`},
		{"dir", pins.Entry{Path: "/b", Kind: pins.KindDir}, `{"path":"/b","kind":"dir"}`},
		{"unreadable", pins.Entry{Path: "/b/x", Error: "permission denied"}, `{"path":"/b/x","error":"permission denied"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := marshal(t, entryOf(&tc.e)); got != tc.want {
				t.Errorf("\ngot  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestAllowedShapes: names as arrays, as bpftool's token list splits the
// kernel's mount options; never ':'-joined, never absent.
func TestAllowedShapes(t *testing.T) {
	names := delegate.BuiltinNames()
	for _, tc := range []struct {
		opts string
		want string
	}{
		{"", `{"allowed_cmds":[],"allowed_maps":[],"allowed_progs":[],"allowed_attachs":[]}`},
		{"delegate_cmds=map_create:prog_load,delegate_progs=socket_filter",
			`{"allowed_cmds":["map_create","prog_load"],"allowed_maps":[],"allowed_progs":["socket_filter"],"allowed_attachs":[]}`},
		{"delegate_maps=any", `{"allowed_cmds":[],"allowed_maps":["any"],"allowed_progs":[],"allowed_attachs":[]}`},
	} {
		set, err := names.ParseOptions(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := marshal(t, allowedOf(names, set)); got != tc.want {
			t.Errorf("%q:\ngot  %s\nwant %s", tc.opts, got, tc.want)
		}
		// The arrays are the kernel's option values, split.
		for _, k := range delegate.Kinds {
			if got, want := strings.Join(allowedOf(names, set).list(k), ":"), names.FormatMask(k, set.Mask(k)); got != want {
				t.Errorf("%q %s: %q, kernel shows %q", tc.opts, k, got, want)
			}
		}
	}
}

func TestTokenShowShape(t *testing.T) {
	names := delegate.BuiltinNames()
	set, _ := names.ParseOptions("delegate_cmds=map_create,delegate_maps=hash")
	v := tokenShowJSON{Path: "/sys/fs/bpf", allowedJSON: allowedOf(names, set), Options: names.FormatOptions(set),
		UID: 1, GID: 2, Mode: octalMode(0o1777), Token: &tokenInfoJSON{Source: "obj_info", allowedJSON: allowedOf(names, set)}}
	want := `{"token_info":"/sys/fs/bpf","allowed_cmds":["map_create"],"allowed_maps":["hash"],"allowed_progs":[],"allowed_attachs":[],` +
		`"options":"delegate_cmds=map_create,delegate_maps=hash","uid":1,"gid":2,"mode":"1777",` +
		`"token":{"source":"obj_info","allowed_cmds":["map_create"],"allowed_maps":["hash"],"allowed_progs":[],"allowed_attachs":[],"options":""}}`
	if got := marshal(t, v); got != want {
		t.Errorf("\ngot  %s\nwant %s", got, want)
	}
}

func TestOctalMode(t *testing.T) {
	for m, want := range map[uint32]string{0o1777: "1777", 0o700: "0700", 0o40755: "0755", 0o777: "0777"} {
		if got := octalMode(m); got != want {
			t.Errorf("%o: %s, want %s", m, got, want)
		}
	}
}

func TestProfileShape(t *testing.T) {
	names := delegate.BuiltinNames()
	mode := uint32(0o700)
	p := profile.Profile{Name: "x", Cmds: "map_create:prog_load", Progs: "socket_filter", Mode: &mode, Source: "builtin", Builtin: true}
	set, skipped, err := p.Resolve(names)
	if err != nil {
		t.Fatal(err)
	}
	got := marshal(t, profileOf(names, p, set, skipped))
	want := `{"name":"x","source":"builtin","builtin":true,"options":"delegate_cmds=map_create:prog_load,delegate_progs=socket_filter",` +
		`"allowed_cmds":["map_create","prog_load"],"allowed_maps":[],"allowed_progs":["socket_filter"],"allowed_attachs":[],` +
		`"caps":[],"path":"/sys/fs/bpf","mode":"0700"}`
	if got != want {
		t.Errorf("\ngot  %s\nwant %s", got, want)
	}
}

func TestApplyShape(t *testing.T) {
	got := marshal(t, applyOf([]preload.Result{
		{Name: "a", Action: preload.Replaced, Why: "manifest or object changed", Kept: []string{"counts"}, Duration: time.Millisecond},
		{Name: "b", Action: preload.Failed, Why: "load: permission denied"},
	}))
	want := `[{"name":"a","action":"replaced","why":"manifest or object changed","kept":["counts"],"duration_ns":1000000},` +
		`{"name":"b","action":"failed","error":"load: permission denied","duration_ns":0}]`
	if got != want {
		t.Errorf("\ngot  %s\nwant %s", got, want)
	}
}

// TestWriteJSON: -j is one line, -p is indented by four spaces as bpftool's,
// and neither escapes HTML.
func TestWriteJSON(t *testing.T) {
	v := map[string]any{"a": []string{"x<y"}}
	var b bytes.Buffer
	writeJSON(&b, v, false)
	if b.String() != `{"a":["x<y"]}`+"\n" {
		t.Errorf("compact: %q", b.String())
	}
	b.Reset()
	writeJSON(&b, v, true)
	if b.String() != "{\n    \"a\": [\n        \"x<y\"\n    ]\n}\n" {
		t.Errorf("pretty: %q", b.String())
	}
}

func TestWantsJSON(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"ls", "-j"}, true},
		{[]string{"--json", "ls"}, true},
		{[]string{"ls", "--pretty"}, true},
		{[]string{"ls", "-jp"}, true},
		{[]string{"pin", "-p", "map", "1", "/x"}, false}, // -p is --parents there
		{[]string{"run", "--", "tool", "-j"}, false},
		{[]string{"ls"}, false},
	} {
		if got := wantsJSON(tc.args); got != tc.want {
			t.Errorf("%q: %v", tc.args, got)
		}
	}
}

func TestPrintResults(t *testing.T) {
	g := &globals{json: true}
	fail := errors.New("b: boom")
	// A failure an object carries: exit non-zero, print nothing more.
	if err := printResults(g, []applyJSON{{Name: "b", Action: preload.Failed, Error: "boom"}}, fail); !errors.As(err, new(reported)) {
		t.Errorf("carried failure: %v", err)
	}
	// A failure no object carries is the output.
	if err := printResults(g, []applyJSON{{Name: "a", Action: preload.Created}}, fail); err != fail {
		t.Errorf("uncarried failure: %v", err)
	}
}

// TestJSONErrorParses: what execute prints for an error is one object.
func TestJSONErrorParses(t *testing.T) {
	var e map[string]string
	if err := json.Unmarshal([]byte(marshal(t, errorJSON{`a "quoted" path`})), &e); err != nil || e["error"] != `a "quoted" path` || len(e) != 1 {
		t.Errorf("%v %v", e, err)
	}
}
