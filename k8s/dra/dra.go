package dra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"

	"github.com/bpfgate/bpfgate/cdi"
)

const (
	// DriverName is the driver's name in ResourceSlices and claims.
	DriverName = cdi.Vendor
	// ProfileAttribute is the device attribute that names its profile
	// (device.attributes["bpfgate.dev"].profile in CEL).
	ProfileAttribute = "profile"
	// DefaultRegistrarDir is where kubelet looks for plugins to register.
	DefaultRegistrarDir = "/var/lib/kubelet/plugins_registry"
	// DefaultDataDir is where the driver puts its socket.
	DefaultDataDir = "/var/lib/kubelet/plugins/" + DriverName
	// DefaultDevices is how many claims can hold one profile on a node.
	DefaultDevices = 8
	// MaxDevices bounds devices per node: a ResourceSlice holds at most
	// 128 devices.
	MaxDevices = resourceapi.ResourceSliceMaxDevices
)

var (
	// ErrConfig means the configuration cannot be served.
	ErrConfig = errors.New("DRA driver configuration")
	// ErrUnknownDevice means a claim was allocated a device the driver
	// does not publish.
	ErrUnknownDevice = errors.New("unknown device")
	// ErrNamespace means a claim's namespace may not have the profile of
	// a device it was allocated.
	ErrNamespace = errors.New("profile not allowed in this namespace")
)

// Config is what Run serves.
type Config struct {
	Profiles []string // the host's allowed profiles
	// Namespaces are, per profile, the only Kubernetes namespaces whose
	// claims may have it (profile.Profile's K8sNamespaces); a profile not
	// in it is for every namespace.
	Namespaces   map[string][]string
	Node         string               // this node's name
	Client       kubernetes.Interface // to publish the ResourceSlice and read claims
	RegistrarDir string               // default DefaultRegistrarDir
	DataDir      string               // default DefaultDataDir
	Devices      int                  // per profile, default DefaultDevices
	Log          func(Event)
}

// Event is something the driver did or failed to do.
type Event struct {
	Action  string   `json:"action"` // published, prepared, unprepared, error, stopped
	Claim   string   `json:"claim,omitempty"`
	CDI     []string `json:"cdi_devices,omitempty"`
	Devices int      `json:"devices,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// DeviceName is the name of a profile's i-th device.
func DeviceName(profile string, i int) string { return fmt.Sprintf("%s-%d", profile, i) }

func (c *Config) check() error {
	if c.RegistrarDir == "" {
		c.RegistrarDir = DefaultRegistrarDir
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Node == "" || c.Client == nil {
		return fmt.Errorf("%w: a node name and an API client are required", ErrConfig)
	}
	if len(c.Profiles) == 0 {
		return fmt.Errorf("%w: no profile to serve: the host policy allows none", ErrConfig)
	}
	if c.Devices < 1 || c.Devices*len(c.Profiles) > MaxDevices {
		return fmt.Errorf("%w: %d devices per profile for %d profiles: give 1 to %d in all", ErrConfig, c.Devices, len(c.Profiles), MaxDevices)
	}
	for _, p := range c.Profiles {
		if err := checkProfile(p, c.Devices); err != nil {
			return err
		}
	}
	return nil
}

// devices are the devices Run publishes: n per profile, each with its
// profile as the attribute ProfileAttribute (in the driver's domain: CEL
// reads it as device.attributes["bpfgate.dev"].profile).
func devices(profiles []string, n int) []resourceapi.Device {
	var devs []resourceapi.Device
	for _, p := range profiles {
		for i := range n {
			devs = append(devs, resourceapi.Device{Name: DeviceName(p, i), Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
				ProfileAttribute: {StringValue: &p},
			}})
		}
	}
	return devs
}

// checkDir refuses a directory others may write: they could replace the
// driver's sockets with their own and answer kubelet's NodePrepareResources
// with any CDI device. One that does not exist (yet) is kubelet's to make.
func checkDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Uid != 0 && int(st.Uid) != os.Getuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d with mode %#o, so others may write it: make it root's, writable by no one else (kubelet makes its directories 0750)",
			ErrConfig, dir, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// driver answers kubelet.
type driver struct {
	profiles   map[string]string   // device name -> profile
	namespaces map[string][]string // profile -> its namespaces, if limited
	log        func(Event)
}

// Run registers the driver with kubelet, publishes the node's devices and
// prepares claims until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if cfg.Log == nil {
		cfg.Log = func(Event) {}
	}
	d := &driver{profiles: map[string]string{}, namespaces: cfg.Namespaces, log: cfg.Log}
	devs := devices(cfg.Profiles, cfg.Devices)
	for _, dev := range devs {
		d.profiles[dev.Name] = *dev.Attributes[ProfileAttribute].StringValue
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return err
	}
	// kubelet finds the driver's socket through the registrar's.
	for _, dir := range []string{cfg.DataDir, cfg.RegistrarDir} {
		if err := checkDir(dir); err != nil {
			return err
		}
	}
	h, err := kubeletplugin.Start(ctx, d, kubeletplugin.KubeClient(cfg.Client), kubeletplugin.NodeName(cfg.Node),
		kubeletplugin.DriverName(DriverName), kubeletplugin.RegistrarDirectoryPath(cfg.RegistrarDir),
		kubeletplugin.PluginDataDirectoryPath(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("start the DRA kubelet plugin: %w", err)
	}
	defer func() {
		h.Stop()
		// Its sockets; the directory when nothing else is in it.
		os.Remove(filepath.Join(cfg.DataDir, "dra.sock"))
		os.Remove(cfg.DataDir)
		cfg.Log(Event{Action: "stopped"})
	}()
	err = h.PublishResources(ctx, resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
		cfg.Node: {Slices: []resourceslice.Slice{{Devices: devs}}},
	}})
	if err != nil {
		return fmt.Errorf("publish the ResourceSlice: %w", err)
	}
	cfg.Log(Event{Action: "published", Devices: len(devs)})
	<-ctx.Done()
	return nil
}

// PrepareResourceClaims maps each claim's devices of this driver to their
// profiles' CDI devices.
func (d *driver) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, c := range claims {
		out[c.UID] = d.prepare(c)
	}
	return out, nil
}

func (d *driver) prepare(c *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	var res kubeletplugin.PrepareResult
	name := c.Namespace + "/" + c.Name
	if c.Status.Allocation == nil {
		res.Err = fmt.Errorf("claim %s is not allocated", name)
		d.log(Event{Action: "error", Claim: name, Error: res.Err.Error()})
		return res
	}
	var ids []string
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != DriverName {
			continue
		}
		p, ok := d.profiles[r.Device]
		if !ok {
			res.Err = fmt.Errorf("claim %s: %w %q: this node publishes no such device (was the policy changed?)", name, ErrUnknownDevice, r.Device)
			res.Devices = nil
			d.log(Event{Action: "error", Claim: name, Error: res.Err.Error()})
			return res
		}
		if nss, limited := d.namespaces[p]; limited && !slices.Contains(nss, c.Namespace) {
			res.Err = fmt.Errorf("claim %s: %w: profile %s is for claims of the namespaces %s only (k8s_namespaces in the node's bpfgate config), not %s",
				name, ErrNamespace, p, strings.Join(nss, ", "), c.Namespace)
			res.Devices = nil
			d.log(Event{Action: "error", Claim: name, Error: res.Err.Error()})
			return res
		}
		id := cdi.Kind + "=" + p
		ids = append(ids, id)
		res.Devices = append(res.Devices, kubeletplugin.Device{
			Requests: []string{r.Request}, PoolName: r.Pool, DeviceName: r.Device, CDIDeviceIDs: []string{id},
		})
	}
	d.log(Event{Action: "prepared", Claim: name, CDI: ids})
	return res
}

// UnprepareResourceClaims has nothing to undo: preparing made nothing.
func (d *driver) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := make(map[types.UID]error, len(claims))
	for _, c := range claims {
		out[c.UID] = nil
		d.log(Event{Action: "unprepared", Claim: c.String()})
	}
	return out, nil
}

func (d *driver) HandleError(_ context.Context, err error, msg string) {
	d.log(Event{Action: "error", Error: msg + ": " + err.Error()})
}
