package deviceplugin

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDirOthersMayWrite: in a directory another user may write, they could
// replace the plugin's socket with their own after it registers, and
// answer kubelet's Allocate with any CDI device. The plugin does not serve
// there (kubelet makes its directory 0750).
func TestDirOthersMayWrite(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o770, os.ModeSticky | 0o777} {
		dir := t.TempDir()
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		k := startKubelet(t, dir)
		var events []Event
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		err := Run(ctx, Config{Profiles: []string{"demo"}, Dir: dir, Log: func(e Event) { events = append(events, e) }})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-k.reqs:
			t.Errorf("mode %v: registered %s in a directory others may write", mode, r.ResourceName)
		default:
		}
		if len(events) == 0 || events[0].Action != "listen_failed" || !strings.Contains(events[0].Error, "others may write") {
			t.Errorf("mode %v: events %+v, want listen_failed saying others may write the directory", mode, events)
		}
		if _, err := os.Lstat(filepath.Join(dir, "bpfgate-demo.sock")); err == nil {
			t.Errorf("mode %v: the plugin made its socket there", mode)
		}
	}
}

// TestSymlinkAtSocketName: a symlink at the plugin's socket name, to a
// socket or a file elsewhere, is neither followed nor removed, nor is its
// target.
func TestSymlinkAtSocketName(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	l, err := net.Listen("unix", filepath.Join(elsewhere, "victim.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	link := filepath.Join(dir, "bpfgate-demo.sock")
	if err := os.Symlink(filepath.Join(elsewhere, "victim.sock"), link); err != nil {
		t.Fatal(err)
	}
	startKubelet(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := Run(ctx, Config{Profiles: []string{"demo"}, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced or removed: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(elsewhere, "victim.sock")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("its target was removed: %v", err)
	}
}
