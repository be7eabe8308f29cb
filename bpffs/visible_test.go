package bpffs

import (
	"slices"
	"testing"
)

func TestVisible(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paths []string
		want  []int // ids kept
	}{
		{"none", nil, nil},
		{"distinct", []string{"/a", "/b"}, []int{0, 1}},
		{"stacked", []string{"/sys/fs/bpf", "/run", "/sys/fs/bpf"}, []int{1, 2}},
		{"three high", []string{"/a", "/a", "/a"}, []int{2}},
	} {
		var in []Info
		for i, p := range tc.paths {
			in = append(in, Info{ID: i, Path: p})
		}
		var got []int
		for _, m := range Visible(in, MountPath) {
			got = append(got, m.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: kept %v, want %v", tc.name, got, tc.want)
		}
	}
}
