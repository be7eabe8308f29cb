package deviceplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// kubelet is the registration side of kubelet's device manager, on a
// socket in dir, recording what registers.
type kubelet struct {
	pluginapi.UnimplementedRegistrationServer
	srv  *grpc.Server
	reqs chan *pluginapi.RegisterRequest
}

func startKubelet(t *testing.T, dir string) *kubelet {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(dir, KubeletSocket))
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{srv: grpc.NewServer(), reqs: make(chan *pluginapi.RegisterRequest, 16)}
	pluginapi.RegisterRegistrationServer(k.srv, k)
	go k.srv.Serve(l)
	t.Cleanup(k.srv.Stop)
	return k
}

func (k *kubelet) Register(_ context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.reqs <- r
	return &pluginapi.Empty{}, nil
}

// registered waits for n registrations and returns their resources.
func (k *kubelet) registered(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	for range n {
		select {
		case r := <-k.reqs:
			if r.Version != pluginapi.Version {
				t.Errorf("registered with version %q, want %q", r.Version, pluginapi.Version)
			}
			got = append(got, r.ResourceName+" "+r.Endpoint)
		case <-time.After(15 * time.Second):
			t.Fatalf("%d registrations in 15 s, want %d: %v", len(got), n, got)
		}
	}
	slices.Sort(got)
	return got
}

func runPlugin(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10 s after its context was cancelled")
		}
	}
}

func dial(t *testing.T, socket string) pluginapi.DevicePluginClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pluginapi.NewDevicePluginClient(conn)
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	k := startKubelet(t, dir)
	stop := runPlugin(t, Config{Profiles: []string{"demo", "tracing"}, Dir: dir, Devices: 3})
	defer stop()
	want := []string{"bpfgate.dev/bpf-demo bpfgate-demo.sock", "bpfgate.dev/bpf-tracing bpfgate-tracing.sock"}
	if got := k.registered(t, 2); !slices.Equal(got, want) {
		t.Fatalf("registered %q, want %q", got, want)
	}
	c := dial(t, filepath.Join(dir, "bpfgate-demo.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	lw, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range lw.Devices {
		if d.Health != pluginapi.Healthy {
			t.Errorf("device %s is %s", d.ID, d.Health)
		}
		ids = append(ids, d.ID)
	}
	if want := []string{"demo-0", "demo-1", "demo-2"}; !slices.Equal(ids, want) {
		t.Errorf("devices %q, want %q", ids, want)
	}

	for _, tc := range []struct {
		name string
		ids  [][]string
		want string // the one CDI device per container, or the error
	}{
		{"one container", [][]string{{"demo-1"}}, "bpfgate.dev/bpf=demo"},
		{"two containers", [][]string{{"demo-0"}, {"demo-2", "demo-1"}}, "bpfgate.dev/bpf=demo"},
		{"another profile's device", [][]string{{"tracing-0"}}, ErrUnknownDevice.Error()},
		{"out of range", [][]string{{"demo-3"}}, ErrUnknownDevice.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &pluginapi.AllocateRequest{}
			for _, ids := range tc.ids {
				req.ContainerRequests = append(req.ContainerRequests, &pluginapi.ContainerAllocateRequest{DevicesIds: ids})
			}
			resp, err := c.Allocate(ctx, req)
			if strings.HasPrefix(tc.want, "bpfgate.dev/") {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Allocate: %v, want an error with %q", err, tc.want)
				}
				return
			}
			if len(resp.ContainerResponses) != len(tc.ids) {
				t.Fatalf("%d container responses, want %d", len(resp.ContainerResponses), len(tc.ids))
			}
			for _, cr := range resp.ContainerResponses {
				// The CDI device and nothing else: no mounts, devices,
				// environment or annotations of the plugin's own.
				if len(cr.CdiDevices) != 1 || cr.CdiDevices[0].Name != tc.want ||
					len(cr.Mounts)+len(cr.Devices)+len(cr.Envs)+len(cr.Annotations) != 0 {
					t.Errorf("container response %v, want only CDI device %s", cr, tc.want)
				}
			}
		})
	}
}

// TestKubeletRestart: kubelet removes the directory's sockets and makes a
// new one of its own; the plugin listens and registers again.
func TestKubeletRestart(t *testing.T) {
	dir := t.TempDir()
	k := startKubelet(t, dir)
	events := make(chan Event, 64)
	stop := runPlugin(t, Config{Profiles: []string{"demo"}, Dir: dir, Log: func(e Event) { events <- e }})
	defer stop()
	// waitEvent waits for the plugin to report action.
	waitEvent := func(action string) {
		t.Helper()
		for {
			select {
			case e := <-events:
				if e.Action == action {
					return
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("no %s event in 15 s", action)
			}
		}
	}
	k.registered(t, 1)
	waitEvent("registered")
	for round := range 2 {
		k.srv.Stop()
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			os.Remove(filepath.Join(dir, e.Name()))
		}
		k = startKubelet(t, dir)
		waitEvent("kubelet_restarted")
		if got := k.registered(t, 1); got[0] != "bpfgate.dev/bpf-demo bpfgate-demo.sock" {
			t.Fatalf("round %d: registered %q", round, got)
		}
		waitEvent("registered")
		if fi, err := os.Stat(filepath.Join(dir, "bpfgate-demo.sock")); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Fatalf("round %d: the plugin's socket: %v", round, err)
		}
	}
}

// TestStop: Run removes its own sockets and nothing else.
func TestStop(t *testing.T) {
	dir := t.TempDir()
	k := startKubelet(t, dir)
	other := filepath.Join(dir, "other-vendor.sock")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := runPlugin(t, Config{Profiles: []string{"demo", "tracing"}, Dir: dir})
	k.registered(t, 2)
	stop()
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{KubeletSocket, "other-vendor.sock"}; !slices.Equal(left, want) {
		t.Errorf("left in the directory: %q, want %q", left, want)
	}
}

// TestWaitsForKubelet: started before kubelet, the plugin registers once
// kubelet's socket appears; cancelled before, it returns at once.
func TestWaitsForKubelet(t *testing.T) {
	dir := t.TempDir()
	stop := runPlugin(t, Config{Profiles: []string{"demo"}, Dir: dir})
	time.Sleep(300 * time.Millisecond)
	k := startKubelet(t, dir)
	k.registered(t, 1)
	stop()
	stop = runPlugin(t, Config{Profiles: []string{"demo"}, Dir: t.TempDir()})
	stop()
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "bpfgate-demo.sock")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	startKubelet(t, dir)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no profiles", Config{Dir: dir}, "no profile"},
		{"too many devices", Config{Profiles: []string{"demo"}, Dir: dir, Devices: MaxDevices + 1}, "devices per profile"},
		{"negative devices", Config{Profiles: []string{"demo"}, Dir: dir, Devices: -1}, "devices per profile"},
		{"bad name", Config{Profiles: []string{"a/b"}, Dir: dir}, "resource name"},
		{"name ends badly", Config{Profiles: []string{"demo-"}, Dir: dir}, "resource name"},
		{"long name", Config{Profiles: []string{strings.Repeat("x", 60)}, Dir: dir}, "resource name"},
		{"twice", Config{Profiles: []string{"demo", "demo"}, Dir: dir}, "twice"},
		{"long path", Config{Profiles: []string{"demo"}, Dir: "/" + strings.Repeat("d", 100)}, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want %v saying %q", err, ErrConfig, tc.want)
			}
		})
	}
	// A file at the socket's name that is not a socket is left alone.
	var events []Event
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := Run(ctx, Config{Profiles: []string{"demo"}, Dir: dir, Log: func(e Event) { events = append(events, e) }}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(notSocket); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s was replaced or removed: %v", notSocket, err)
	}
	if len(events) == 0 || events[0].Action != "listen_failed" || !strings.Contains(events[0].Error, "not a socket") {
		t.Errorf("events %+v, want listen_failed saying it is not a socket", events)
	}
}
