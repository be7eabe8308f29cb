package nri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/ocihook"
)

// TestCreateContainerHostile: what a pod's author controls (annotation
// keys and values, container names) gets no profile the policy does not
// name exactly, no hook arguments of its own, and no hook in a container
// the annotation does not name.
func TestCreateContainerHostile(t *testing.T) {
	p := testPlugin(t)
	for _, tc := range []struct {
		name   string
		annots map[string]string
		ctr    string
		err    error
	}{
		{"arguments in the value", map[string]string{ProfileAnnotation: "demo --config /tmp/evil.yaml"}, "c", ocihook.ErrNotAllowed},
		{"a flag as the value", map[string]string{ProfileAnnotation: "--config=/tmp/evil.yaml"}, "c", ocihook.ErrNotAllowed},
		{"a newline", map[string]string{ProfileAnnotation: "demo\n"}, "c", ocihook.ErrNotAllowed},
		{"another case", map[string]string{ProfileAnnotation: "Demo"}, "c", ocihook.ErrNotAllowed},
		{"a path", map[string]string{ProfileAnnotation: "../demo"}, "c", ocihook.ErrNotAllowed},
		{"a huge value", map[string]string{ProfileAnnotation: strings.Repeat("d", 256<<10)}, "c", ocihook.ErrNotAllowed},
		{"another container's key", map[string]string{ContainerAnnotationPrefix + "c": "demo"}, "cc", nil},
		{"a prefix of the name", map[string]string{ContainerAnnotationPrefix + "c": "demo"}, "c.x", nil},
		{"a key in another case", map[string]string{"bpfgate.dev/Profile": "demo", "Bpfgate.dev/profile.container.c": "demo"}, "c", nil},
		{"an opt-out cannot be undone by another key", map[string]string{ProfileAnnotation: "demo", ContainerAnnotationPrefix + "c": "", ContainerAnnotationPrefix + "c ": "demo"}, "c", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adj, upd, err := p.CreateContainer(context.Background(), pod(tc.annots), ctr(tc.ctr, userNS, nil))
			if len(upd) > 0 {
				t.Errorf("updates to other containers: %v", upd)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) || adj != nil {
					t.Errorf("got %v, %v; want %v and no adjustment", adj, err, tc.err)
				}
				return
			}
			if err != nil || adj != nil {
				t.Errorf("got %v, %v; want the container left alone", adj, err)
			}
		})
	}
}

// TestLocalhostHostileFile: the Localhost profile is a file the plugin
// opens as root; one that is a FIFO with no writer, a device or larger
// than the plugin reads neither hangs it nor changes the seccomp policy:
// the hook judges the container.
func TestLocalhostHostileFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxSeccompSize+1); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	p := testPlugin(t)
	for _, path := range []string{fifo, big, link, "/dev/zero", dir, filepath.Join(dir, "missing.json")} {
		c := ctr("c", userNS, nil)
		c.Linux.SeccompProfile = &api.SecurityProfile{ProfileType: api.SecurityProfile_LOCALHOST, LocalhostRef: path}
		done := make(chan struct{})
		var adj *api.ContainerAdjustment
		var err error
		go func() {
			defer close(done)
			adj, _, err = p.CreateContainer(context.Background(), pod(map[string]string{ProfileAnnotation: "demo"}), c)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: CreateContainer hangs", path)
		}
		if err != nil || adj.GetLinux().GetSeccompPolicy() != nil || !hasHook(adj) {
			t.Errorf("%s: %v, seccomp %v, hook %v: want the hook and no seccomp change", path, err, adj.GetLinux().GetSeccompPolicy(), hasHook(adj))
		}
	}
}
