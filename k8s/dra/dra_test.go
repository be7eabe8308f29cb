package dra

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func claim(uid string, results ...resourceapi.DeviceRequestAllocationResult) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: uid, UID: types.UID("uid-" + uid)}}
	if results != nil {
		c.Status.Allocation = &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: results}}
	}
	return c
}

func TestPrepare(t *testing.T) {
	d := &driver{profiles: map[string]string{"demo-0": "demo", "demo-1": "demo", "tracing-0": "tracing", "scoped-0": "scoped", "elsewhere-0": "elsewhere"},
		namespaces: map[string][]string{"scoped": {"other", "ns"}, "elsewhere": {"monitoring"}}, log: func(Event) {}}
	for _, tc := range []struct {
		name    string
		claim   *resourceapi.ResourceClaim
		want    []string // CDI ids, in order
		wantErr string
	}{
		{"one device", claim("a", resourceapi.DeviceRequestAllocationResult{Request: "bpf", Driver: DriverName, Pool: "node", Device: "demo-1"}),
			[]string{"bpfgate.dev/bpf=demo"}, ""},
		{"two profiles", claim("b",
			resourceapi.DeviceRequestAllocationResult{Request: "a", Driver: DriverName, Pool: "node", Device: "demo-0"},
			resourceapi.DeviceRequestAllocationResult{Request: "b", Driver: DriverName, Pool: "node", Device: "tracing-0"}),
			[]string{"bpfgate.dev/bpf=demo", "bpfgate.dev/bpf=tracing"}, ""},
		{"another driver's device", claim("c", resourceapi.DeviceRequestAllocationResult{Request: "gpu", Driver: "gpu.example.com", Pool: "node", Device: "demo-0"}),
			nil, ""},
		// A name that only looks like a profile's device is not mapped by
		// cutting it: the driver knows its devices.
		{"unknown device", claim("d", resourceapi.DeviceRequestAllocationResult{Request: "bpf", Driver: DriverName, Pool: "node", Device: "admin-0"}),
			nil, ErrUnknownDevice.Error()},
		{"not allocated", claim("e"), nil, "not allocated"},
		{"namespace allowed", claim("f", resourceapi.DeviceRequestAllocationResult{Request: "bpf", Driver: DriverName, Pool: "node", Device: "scoped-0"}),
			[]string{"bpfgate.dev/bpf=scoped"}, ""},
		{"namespace not allowed", claim("g",
			resourceapi.DeviceRequestAllocationResult{Request: "a", Driver: DriverName, Pool: "node", Device: "demo-0"},
			resourceapi.DeviceRequestAllocationResult{Request: "b", Driver: DriverName, Pool: "node", Device: "elsewhere-0"}),
			nil, "claim ns/g: profile not allowed in this namespace: profile elsewhere is for claims of the namespaces monitoring only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := d.PrepareResourceClaims(context.Background(), []*resourceapi.ResourceClaim{tc.claim})
			if err != nil {
				t.Fatal(err)
			}
			r := res[tc.claim.UID]
			if tc.wantErr != "" {
				if r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr) || len(r.Devices) != 0 {
					t.Fatalf("%+v, want error %q and no device", r, tc.wantErr)
				}
				return
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			var ids []string
			for _, dev := range r.Devices {
				ids = append(ids, dev.CDIDeviceIDs...)
				if len(dev.Requests) != 1 || dev.PoolName != "node" {
					t.Errorf("device %+v: want its request and pool", dev)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("CDI ids %q, want %q", ids, tc.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	client := fake.NewSimpleClientset()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node", Config{Profiles: []string{"demo"}, Client: client}, "node name"},
		{"no client", Config{Profiles: []string{"demo"}, Node: "n"}, "API client"},
		{"no profiles", Config{Node: "n", Client: client}, "no profile"},
		{"too many devices", Config{Profiles: []string{"a", "b"}, Node: "n", Client: client, Devices: 65}, "1 to 128"},
		{"bad name", Config{Profiles: []string{"Demo_1"}, Node: "n", Client: client}, `profile "Demo_1" does not make a device or DeviceClass name`},
		// Its devices could be named, its DeviceClass not: DeviceClasses
		// refuses it, so Run does.
		{"too long for a class", Config{Profiles: []string{strings.Repeat("a", 56)}, Node: "n", Client: client}, "at most 55 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want %v saying %q", err, ErrConfig, tc.want)
			}
		})
	}
}

// TestDirOthersMayWrite: the driver does not serve from a data or registrar
// directory another user may write, where they could replace its sockets
// and answer kubelet with any CDI device.
func TestDirOthersMayWrite(t *testing.T) {
	for _, which := range []string{"data", "registrar"} {
		t.Run(which, func(t *testing.T) {
			data, reg := filepath.Join(t.TempDir(), "bpfgate.dev"), t.TempDir()
			open := reg
			if which == "data" {
				if err := os.Mkdir(data, 0o755); err != nil {
					t.Fatal(err)
				}
				open = data
			}
			if err := os.Chmod(open, 0o777); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := Run(ctx, Config{Profiles: []string{"demo"}, Node: "node", Client: fake.NewClientset(),
				DataDir: data, RegistrarDir: reg})
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "others may write") {
				t.Errorf("Run: %v, want %v saying others may write %s", err, ErrConfig, open)
			}
			entries, _ := os.ReadDir(open)
			for _, e := range entries {
				t.Errorf("made %s in %s", e.Name(), open)
			}
		})
	}
}
