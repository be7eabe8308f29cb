package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
)

// versionInfo is what `bpfgate version` reports. Everything comes from the
// build information the Go toolchain embeds, so there is nothing to keep in
// step by hand (no -ldflags -X).
type versionInfo struct {
	// Version is the module version: a tag, a pseudo-version the toolchain
	// derives from the commit, or "(devel)" when it knows neither.
	Version string `json:"version"`
	// Commit and CommitTime are empty when the binary was built without VCS
	// information (-buildvcs=false, or not from a git checkout).
	Commit     string `json:"commit"`
	CommitTime string `json:"commit_time"`
	// Dirty says the checkout had uncommitted changes.
	Dirty     bool   `json:"dirty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	Cgo       bool   `json:"cgo"`
}

// readVersion turns build information into a versionInfo; ok is what
// debug.ReadBuildInfo returned.
func readVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{
		Version:   "(unknown)",
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if !ok || bi == nil {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Dirty = s.Value == "true"
		case "CGO_ENABLED":
			v.Cgo = s.Value == "1"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		v.Platform = goos + "/" + goarch
	}
	return v
}

// commitTime is the commit's time, for reproducible dates (man pages).
func (v versionInfo) commitTime() (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, v.CommitTime)
	return t, err == nil
}

func currentVersion() versionInfo { return readVersion(debug.ReadBuildInfo()) }

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version bpfgate was built with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := currentVersion()
			if g.jsonOut() {
				return g.printJSON(v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "bpfgate %s\n", v.Version)
			if v.Commit == "" {
				fmt.Fprintln(w, "commit:  unknown (built without VCS information: -buildvcs=false or not from a git checkout)")
			} else {
				dirty := ""
				if v.Dirty {
					dirty = " (dirty: uncommitted changes)"
				}
				fmt.Fprintf(w, "commit:  %s%s\n", v.Commit, dirty)
				fmt.Fprintf(w, "time:    %s\n", v.CommitTime)
			}
			cgo := "without cgo"
			if v.Cgo {
				cgo = "with cgo"
			}
			fmt.Fprintf(w, "go:      %s %s, %s\n", v.GoVersion, v.Platform, cgo)
			return nil
		},
	}
}
