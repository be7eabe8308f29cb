package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/bpfgate/bpfgate/cdi"
)

const (
	// ResourcePrefix starts every resource name: bpfgate.dev/bpf-PROFILE.
	ResourcePrefix = cdi.Kind + "-"
	// DefaultDir is kubelet's device-plugin directory (fixed in kubelet).
	DefaultDir = pluginapi.DevicePluginPath
	// KubeletSocket is the name of kubelet's registration socket in Dir.
	KubeletSocket = "kubelet.sock"
	// DefaultDevices is how many containers can hold one profile at once.
	DefaultDevices = 64
	// MaxDevices bounds Config.Devices (and the ListAndWatch answer).
	MaxDevices = 4096
	// SocketPrefix starts the name of each of the plugin's sockets.
	SocketPrefix = "bpfgate-"
)

// Bounds on what the plugin waits for.
const (
	registerTimeout = 10 * time.Second
	pollInterval    = time.Second
	maxRequests     = 1024 // container requests in one Allocate
)

var (
	// ErrConfig means the configuration cannot be served.
	ErrConfig = errors.New("device plugin configuration")
	// ErrUnknownDevice means kubelet asked for a device the plugin does not have.
	ErrUnknownDevice = errors.New("unknown device")
)

// Config is what Run serves.
type Config struct {
	// Profiles are the host's allowed profiles (profile.Policy), one
	// resource each.
	Profiles []string
	// Dir is kubelet's device-plugin directory (default DefaultDir).
	Dir string
	// Devices is the number of devices per resource (default DefaultDevices).
	Devices int
	// Log, when set, receives what the plugin does.
	Log func(Event)
}

// Event is something the plugin did or failed to do.
type Event struct {
	Action   string `json:"action"` // listening, registered, kubelet_restarted, register_failed, stopped
	Resource string `json:"resource,omitempty"`
	Socket   string `json:"socket,omitempty"`
	Devices  int    `json:"devices,omitempty"`
	Error    string `json:"error,omitempty"`
}

// resourceNameRE is a Kubernetes qualified name's name part.
var resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// ResourceName is the extended resource that stands for profile.
func ResourceName(profile string) string { return ResourcePrefix + profile }

// DeviceName is the CDI device Allocate answers with for profile.
func DeviceName(profile string) string { return cdi.Kind + "=" + profile }

func (c *Config) check() error {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Devices < 1 || c.Devices > MaxDevices {
		return fmt.Errorf("%w: %d devices per profile: give 1 to %d", ErrConfig, c.Devices, MaxDevices)
	}
	if len(c.Profiles) == 0 {
		return fmt.Errorf("%w: no profile to serve: the host policy allows none", ErrConfig)
	}
	seen := map[string]bool{}
	for _, p := range c.Profiles {
		name := strings.TrimPrefix(ResourceName(p), cdi.Vendor+"/")
		if len(name) > 63 || !resourceNameRE.MatchString(name) {
			return fmt.Errorf("%w: profile %q does not make a Kubernetes resource name (%s: at most 63 letters, digits, '-', '_' or '.'): rename it in the host policy",
				ErrConfig, p, ResourceName(p))
		}
		if seen[p] {
			return fmt.Errorf("%w: profile %q is listed twice", ErrConfig, p)
		}
		seen[p] = true
		// sun_path holds 108 bytes with the terminating NUL.
		if sock := filepath.Join(c.Dir, SocketPrefix+p+".sock"); len(sock) > 107 {
			return fmt.Errorf("%w: socket path %s is longer than a unix socket allows (107 bytes): use a shorter directory", ErrConfig, sock)
		}
	}
	return nil
}

// Run serves the plugins and keeps them registered with kubelet until ctx
// is done, then stops them, removes their sockets and returns nil. It
// returns an error at once only when cfg cannot be served; kubelet not
// running is waited for.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if cfg.Log == nil {
		cfg.Log = func(Event) {}
	}
	kubelet := filepath.Join(cfg.Dir, KubeletSocket)
	for {
		// Wait for kubelet's socket before listening: kubelet removes
		// whatever is in the directory when it starts.
		seen, err := waitFor(ctx, kubelet)
		if err != nil {
			cfg.Log(Event{Action: "stopped"})
			return nil
		}
		plugins, err := listen(cfg)
		if err != nil {
			cfg.Log(Event{Action: "listen_failed", Error: err.Error()})
			if sleep(ctx, pollInterval) != nil {
				cfg.Log(Event{Action: "stopped"})
				return nil
			}
			continue
		}
		registered := registerAll(ctx, cfg, kubelet, plugins)
		why := watch(ctx, kubelet, seen, plugins, registered)
		for _, p := range plugins {
			p.stop()
		}
		if why == "" {
			cfg.Log(Event{Action: "stopped"})
			return nil
		}
		cfg.Log(Event{Action: "kubelet_restarted", Error: why})
	}
}

// waitFor waits for path to exist and returns what it is.
func waitFor(ctx context.Context, path string) (os.FileInfo, error) {
	for {
		if fi, err := os.Stat(path); err == nil {
			return fi, nil
		}
		if err := sleep(ctx, pollInterval/4); err != nil {
			return nil, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// registerAll registers every plugin, retrying the failed ones until ctx
// is done or registerTimeout has passed; it says which are registered.
func registerAll(ctx context.Context, cfg Config, kubelet string, plugins []*plugin) []bool {
	done := make([]bool, len(plugins))
	deadline := time.Now().Add(registerTimeout)
	for {
		left := 0
		for i, p := range plugins {
			if done[i] {
				continue
			}
			if err := register(ctx, kubelet, p); err != nil {
				left++
				if time.Now().After(deadline) {
					cfg.Log(Event{Action: "register_failed", Resource: p.resource, Error: err.Error()})
				}
				continue
			}
			done[i] = true
			cfg.Log(Event{Action: "registered", Resource: p.resource, Socket: p.socket, Devices: len(p.devices)})
		}
		if left == 0 || time.Now().After(deadline) || sleep(ctx, pollInterval/4) != nil {
			return done
		}
	}
}

func register(ctx context.Context, kubelet string, p *plugin) error {
	conn, err := grpc.NewClient("unix://"+kubelet, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		return fmt.Errorf("register %s with kubelet at %s: %w", p.resource, kubelet, err)
	}
	return nil
}

// watch waits until ctx is done (it returns "") or kubelet's socket or one
// of the plugins' sockets is replaced or removed, or a registration is
// still missing (it says which).
func watch(ctx context.Context, kubelet string, seen os.FileInfo, plugins []*plugin, registered []bool) string {
	for i, ok := range registered {
		if !ok {
			if sleep(ctx, pollInterval) != nil {
				return ""
			}
			return plugins[i].resource + " is not registered yet"
		}
	}
	for {
		if sleep(ctx, pollInterval) != nil {
			return ""
		}
		if fi, err := os.Stat(kubelet); err != nil || !os.SameFile(fi, seen) {
			return kubelet + " was recreated"
		}
		for _, p := range plugins {
			if fi, err := os.Lstat(p.socket); err != nil || !os.SameFile(fi, p.made) {
				return p.socket + " was removed"
			}
		}
	}
}

// checkDir refuses a directory others may write: they could replace a
// plugin's socket with their own once it is registered, and answer
// kubelet's Allocate with any CDI device. kubelet makes its own 0750.
func checkDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if st.Uid != 0 && int(st.Uid) != os.Getuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d with mode %#o, so others may write it: make it root's, writable by no one else (kubelet makes it 0750)",
			ErrConfig, dir, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// listen starts one plugin per profile.
func listen(cfg Config) ([]*plugin, error) {
	if err := checkDir(cfg.Dir); err != nil {
		return nil, err
	}
	var plugins []*plugin
	for _, name := range cfg.Profiles {
		p, err := start(cfg, name)
		if err != nil {
			for _, p := range plugins {
				p.stop()
			}
			return nil, err
		}
		plugins = append(plugins, p)
		cfg.Log(Event{Action: "listening", Resource: p.resource, Socket: p.socket, Devices: len(p.devices)})
	}
	return plugins, nil
}

// plugin is the device plugin of one profile.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	profile  string
	resource string
	socket   string
	made     os.FileInfo // the socket as it made it
	devices  []*pluginapi.Device
	ids      map[string]bool
	srv      *grpc.Server
	done     chan struct{}
	once     sync.Once
}

func start(cfg Config, profile string) (*plugin, error) {
	p := &plugin{
		profile:  profile,
		resource: ResourceName(profile),
		socket:   filepath.Join(cfg.Dir, SocketPrefix+profile+".sock"),
		ids:      map[string]bool{},
		done:     make(chan struct{}),
	}
	for i := range cfg.Devices {
		id := fmt.Sprintf("%s-%d", profile, i)
		p.devices = append(p.devices, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
		p.ids[id] = true
	}
	// A socket left by a plugin that did not stop cleanly; anything else
	// at that name is not ours to remove.
	if fi, err := os.Lstat(p.socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s exists and is not a socket: remove it", ErrConfig, p.socket)
		}
		os.Remove(p.socket)
	}
	l, err := net.Listen("unix", p.socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p.socket, err)
	}
	if p.made, err = os.Lstat(p.socket); err != nil {
		l.Close()
		return nil, err
	}
	p.srv = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.srv, p)
	go p.srv.Serve(l)
	return p, nil
}

// stop ends the plugin's streams and server and removes its socket if it
// is still the one it made.
func (p *plugin) stop() {
	p.once.Do(func() {
		close(p.done)
		p.srv.Stop()
		if fi, err := os.Lstat(p.socket); err == nil && os.SameFile(fi, p.made) {
			os.Remove(p.socket)
		}
	})
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once: they are always healthy (the hook
// checks the policy when a container starts).
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, s grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	select {
	case <-s.Context().Done():
	case <-p.done:
	}
	return nil
}

// Allocate gives each container the profile's CDI device.
func (p *plugin) Allocate(_ context.Context, r *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	if len(r.GetContainerRequests()) > maxRequests {
		return nil, status.Errorf(codes.InvalidArgument, "%d container requests in one Allocate, more than %d", len(r.GetContainerRequests()), maxRequests)
	}
	resp := &pluginapi.AllocateResponse{}
	for _, c := range r.GetContainerRequests() {
		for _, id := range c.GetDevicesIds() {
			if !p.ids[id] {
				return nil, status.Errorf(codes.InvalidArgument, "%v: %q is not a device of %s", ErrUnknownDevice, id, p.resource)
			}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			CdiDevices: []*pluginapi.CDIDevice{{Name: DeviceName(p.profile)}},
		})
	}
	return resp, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
