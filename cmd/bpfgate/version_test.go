package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestReadVersion(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want versionInfo
	}{
		{
			name: "no build info",
			want: versionInfo{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH},
		},
		{
			name: "from a git checkout",
			ok:   true,
			bi: &debug.BuildInfo{
				GoVersion: "go1.26.1",
				Main:      debug.Module{Path: "github.com/bpfgate/bpfgate", Version: "v0.0.0-20260102030405-0123456789ab+dirty"},
				Settings: settings("CGO_ENABLED", "1", "GOOS", "linux", "GOARCH", "arm64",
					"vcs", "git", "vcs.revision", "0123456789abcdef0123456789abcdef01234567",
					"vcs.time", "2026-01-02T03:04:05Z", "vcs.modified", "true"),
			},
			want: versionInfo{
				Version:    "v0.0.0-20260102030405-0123456789ab+dirty",
				Commit:     "0123456789abcdef0123456789abcdef01234567",
				CommitTime: "2026-01-02T03:04:05Z",
				Dirty:      true,
				GoVersion:  "go1.26.1",
				Platform:   "linux/arm64",
				Cgo:        true,
			},
		},
		{
			name: "tagged, clean, without cgo",
			ok:   true,
			bi: &debug.BuildInfo{
				GoVersion: "go1.26.1",
				Main:      debug.Module{Version: "v1.2.3"},
				Settings: settings("CGO_ENABLED", "0", "GOOS", "linux", "GOARCH", "amd64",
					"vcs.revision", "abc", "vcs.time", "2026-01-02T03:04:05Z", "vcs.modified", "false"),
			},
			want: versionInfo{Version: "v1.2.3", Commit: "abc", CommitTime: "2026-01-02T03:04:05Z",
				GoVersion: "go1.26.1", Platform: "linux/amd64"},
		},
		{
			name: "-buildvcs=false",
			ok:   true,
			bi:   &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: settings("CGO_ENABLED", "1")},
			want: versionInfo{Version: "(devel)", GoVersion: "go1.26.1", Platform: runtime.GOOS + "/" + runtime.GOARCH, Cgo: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readVersion(tc.bi, tc.ok); got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	r := bpfgate(t, "version", "--json")
	var v map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
		t.Fatalf("version --json: %+v", r)
	}
	for _, key := range []string{"version", "commit", "commit_time", "dirty", "go_version", "platform", "cgo"} {
		if _, ok := v[key]; !ok {
			t.Errorf("version --json has no %q: %s", key, r.stdout)
		}
	}
	if v["go_version"] != runtime.Version() {
		t.Errorf("go_version = %v, want %s", v["go_version"], runtime.Version())
	}
	r = bpfgate(t, "version")
	if r.code != 0 || !regexpMatch(`^bpfgate \S+\ncommit: .*\ngo: +go1\.`, r.stdout) {
		t.Fatalf("version: %+v", r)
	}
}
