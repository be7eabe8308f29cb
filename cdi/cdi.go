package cdi

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/bpfgate/bpfgate/internal/atomicfile"
	"github.com/bpfgate/bpfgate/profile"
)

// HookStage is the OCI stage bpfgate's hook runs at (ocihook.Stage; a
// test keeps the two equal without this package importing the hook, which
// links the C helpers).
const HookStage = "createRuntime"

const (
	// Vendor and Class make up the device kind bpfgate.dev/bpf.
	Vendor = "bpfgate.dev"
	Class  = "bpf"
	Kind   = Vendor + "/" + Class
	// DefaultOutput is where `bpfgate cdi generate` writes the spec.
	DefaultOutput = cdiapi.DefaultStaticDir + "/bpfgate.yaml"
	// HookTimeout is the runtime's bound on the hook, in seconds; the hook
	// bounds its own waits well below it.
	HookTimeout = 15
)

// Hook says how the runtime runs bpfgate.
type Hook struct {
	Path string   // absolute path of the bpfgate binary
	Args []string // extra arguments for `bpfgate oci-hook`, e.g. --log FILE
	Env  []string
}

// HookArgs is the command line of the hook for a profile ("" for the
// profile from the container's annotation).
func (h Hook) HookArgs(profile string) []string {
	args := []string{"bpfgate", "oci-hook"}
	if profile != "" {
		args = append(args, "--profile", profile)
	}
	return append(args, h.Args...)
}

// Spec builds the CDI spec with one device per profile.
func Spec(profiles []profile.Profile, hook Hook) (*cdispec.Spec, error) {
	if !filepath.IsAbs(hook.Path) {
		return nil, fmt.Errorf("hook path %q: want an absolute path (runtimes do not search PATH)", hook.Path)
	}
	spec := &cdispec.Spec{Kind: Kind}
	seen := map[string]bool{}
	// Later sources override earlier ones (the config file the built-ins).
	for i := len(profiles) - 1; i >= 0; i-- {
		p := profiles[i]
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		if err := parser.ValidateDeviceName(p.Name); err != nil {
			return nil, fmt.Errorf("profile %q cannot be a CDI device name: %w", p.Name, err)
		}
		timeout := HookTimeout
		spec.Devices = append(spec.Devices, cdispec.Device{
			Name: p.Name,
			ContainerEdits: cdispec.ContainerEdits{Hooks: []*cdispec.Hook{{
				HookName: HookStage,
				Path:     hook.Path,
				Args:     hook.HookArgs(p.Name),
				Env:      hook.Env,
				Timeout:  &timeout,
			}}},
		})
	}
	if len(spec.Devices) == 0 {
		return nil, fmt.Errorf("no profiles: nothing to generate")
	}
	slices.SortFunc(spec.Devices, func(a, b cdispec.Device) int { return strings.Compare(a.Name, b.Name) })
	version, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, err
	}
	spec.Version = version
	return spec, nil
}

// Write validates spec with the CDI packages and writes it to path
// atomically (YAML for .yaml, else JSON), through a fresh temporary file in
// the same directory: a runtime reading the directory sees the old spec or
// the new one. A path that is a symlink is refused.
func Write(spec *cdispec.Spec, path string) error {
	ext := filepath.Ext(path)
	if ext != ".yaml" && ext != ".json" {
		return fmt.Errorf("CDI spec %s: want a name ending in .yaml or .json (runtimes read no other files)", path)
	}
	var data []byte
	var err error
	if ext == ".yaml" {
		data, err = yaml.Marshal(spec)
		data = append([]byte("---\n"), data...)
	} else {
		data, err = json.Marshal(spec)
	}
	if err != nil {
		return fmt.Errorf("CDI spec: %w", err)
	}
	// The runtime's own reader checks the file before it replaces the old
	// spec.
	validate := func(tmp string) error {
		if _, err := cdiapi.ReadSpec(tmp, 0); err != nil {
			return fmt.Errorf("%s would not be a valid spec: %w", path, err)
		}
		return nil
	}
	if err := atomicfile.WriteChecked(path, data, 0o644, validate); err != nil {
		return fmt.Errorf("write CDI spec: %w", err)
	}
	return nil
}

// Device is a bpfgate device as a runtime sees it.
type Device struct {
	Name     string   `json:"name"` // qualified: bpfgate.dev/bpf=NAME
	Profile  string   `json:"profile"`
	Spec     string   `json:"spec"` // the file that defines it
	HookPath string   `json:"hook_path"`
	HookArgs []string `json:"hook_args"`
	Stage    string   `json:"stage"`
}

// List resolves the bpfgate devices in the spec directories (the CDI
// defaults if none are given) as a runtime would, with the errors it would
// report for bad spec files.
func List(dirs ...string) ([]Device, map[string][]error, error) {
	if len(dirs) == 0 {
		dirs = cdiapi.DefaultSpecDirs
	}
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(dirs...), cdiapi.WithAutoRefresh(false))
	if err != nil && cache == nil {
		return nil, nil, err
	}
	var out []Device
	for _, name := range cache.ListDevices() {
		if !strings.HasPrefix(name, Kind+"=") {
			continue
		}
		d := cache.GetDevice(name)
		dev := Device{Name: name, Profile: strings.TrimPrefix(name, Kind+"="), Spec: d.GetSpec().GetPath()}
		for _, h := range d.ContainerEdits.Hooks {
			dev.HookPath, dev.HookArgs, dev.Stage = h.Path, h.Args, h.HookName
		}
		out = append(out, dev)
	}
	return out, cache.GetErrors(), nil
}
