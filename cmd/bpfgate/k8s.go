//go:build k8s

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/k8s/deviceplugin"
	"github.com/bpfgate/bpfgate/k8s/dra"
)

func newK8sCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "k8s",
		Short: "Give Kubernetes pods BPF rights (device plugin, DRA driver, NRI plugin)",
	}
	var (
		dir     string
		devices int
	)
	dp := &cobra.Command{
		Use:   "device-plugin",
		Short: "Serve the allowed profiles to kubelet as bpfgate.dev/bpf-PROFILE resources",
		Long: `Serve kubelet's device-plugin API: one extended resource
bpfgate.dev/bpf-PROFILE for each profile the host allows (the config file's,
or the built-in ones when there is no file), with --devices devices each, so
that many pods can share a profile. A container that asks for one gets the
CDI device bpfgate.dev/bpf=PROFILE, which the runtime resolves through the
spec of 'bpfgate cdi generate' (run it on the node first). The pod needs
hostUsers: false and capabilities.add: ["BPF"]. It registers again whenever
kubelet restarts, and runs until SIGINT or SIGTERM. Under --json it prints
one JSON line per event.`,
		Example: `  bpfgate cdi generate
  bpfgate k8s device-plugin --devices 64
  # in the pod: resources: {limits: {bpfgate.dev/bpf-demo: 1}}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if devices < 1 || devices > deviceplugin.MaxDevices {
				// 0 would be the library's default.
				return fmt.Errorf("%w: --devices %d: give 1 to %d", deviceplugin.ErrConfig, devices, deviceplugin.MaxDevices)
			}
			all, limited, err := g.allowedProfiles()
			if err != nil {
				return err
			}
			profiles, err := devicePluginProfiles(all, limited)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
			defer stop()
			var mu sync.Mutex
			return deviceplugin.Run(ctx, deviceplugin.Config{
				Profiles: profiles,
				Dir:      dir,
				Devices:  devices,
				Log: func(e deviceplugin.Event) {
					mu.Lock()
					defer mu.Unlock()
					if g.jsonOut() {
						g.printJSON(e)
						return
					}
					msg := "bpfgate: " + e.Action
					if e.Resource != "" {
						msg += " " + e.Resource
					}
					if e.Socket != "" {
						msg += fmt.Sprintf(" at %s", e.Socket)
					}
					if e.Devices != 0 {
						msg += fmt.Sprintf(" (%d devices)", e.Devices)
					}
					if e.Error != "" {
						msg += ": " + e.Error
					}
					fmt.Fprintln(os.Stderr, msg)
				},
			})
		},
	}
	dp.Flags().StringVar(&dir, "kubelet-dir", deviceplugin.DefaultDir, "kubelet's device-plugin directory (its kubelet.sock)")
	dp.Flags().IntVar(&devices, "devices", deviceplugin.DefaultDevices, "devices per profile: how many containers can hold one at once")
	cmd.AddCommand(dp, newK8sDRACmd(g), newK8sNRICmd(g))
	return cmd
}

// allowedProfiles are the names of the profiles the host policy allows,
// and the Kubernetes namespaces of those limited to some.
func (g *globals) allowedProfiles() ([]string, map[string][]string, error) {
	names, err := delegate.KernelNames()
	if err != nil {
		return nil, nil, err
	}
	pol, err := g.policy(names)
	if err != nil {
		return nil, nil, err
	}
	var profiles []string
	limited := map[string][]string{}
	for _, p := range pol.Profiles {
		profiles = append(profiles, p.Name)
		if len(p.K8sNamespaces) > 0 {
			limited[p.Name] = p.K8sNamespaces
		}
	}
	return profiles, limited, nil
}

// devicePluginProfiles are the profiles the device plugin may offer: not
// those limited to some namespaces, since kubelet does not tell a device
// plugin whose pod it allocates for. It says which it leaves out.
func devicePluginProfiles(profiles []string, limited map[string][]string) ([]string, error) {
	var out []string
	for _, p := range profiles {
		if nss, ok := limited[p]; ok {
			fmt.Fprintf(os.Stderr, "bpfgate: not offering profile %s: it is for the namespaces %s only (k8s_namespaces), and a device plugin cannot tell a pod's namespace; use the DRA driver or the NRI plugin for it\n",
				p, strings.Join(nss, ", "))
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 && len(profiles) > 0 {
		return nil, fmt.Errorf("%w: every allowed profile is limited to some namespaces (k8s_namespaces), which a device plugin cannot enforce: use bpfgate k8s dra or bpfgate k8s nri", deviceplugin.ErrConfig)
	}
	return out, nil
}

func newK8sDRACmd(g *globals) *cobra.Command {
	var (
		kubeconfig, node, registrar, data string
		devices                           int
	)
	cmd := &cobra.Command{
		Use:   "dra",
		Short: "Serve the allowed profiles to kubelet as a DRA driver (bpfgate.dev)",
		Long: `Run a Dynamic Resource Allocation kubelet plugin, driver bpfgate.dev: it
publishes a ResourceSlice for this node with --devices devices per profile
the host allows (attribute bpfgate.dev/profile), and prepares a claim
allocated one of them to the CDI device bpfgate.dev/bpf=PROFILE, which the
runtime resolves through the spec of 'bpfgate cdi generate'. A DeviceClass
per profile selects the devices: 'bpfgate k8s dra device-classes' prints
them for kubectl apply. The pod needs
hostUsers: false and capabilities.add: ["BPF"]. In a pod it uses the pod's
service account (in-cluster configuration) unless --kubeconfig is given.
Runs until SIGINT or SIGTERM. Under --json it prints one JSON line per event.`,
		Example: `  bpfgate cdi generate
  NODE_NAME=$(hostname) bpfgate k8s dra`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if devices < 1 {
				return fmt.Errorf("%w: --devices %d: give at least 1", dra.ErrConfig, devices)
			}
			if node == "" {
				return fmt.Errorf("%w: no node name: give --node or set NODE_NAME", dra.ErrConfig)
			}
			profiles, limited, err := g.allowedProfiles()
			if err != nil {
				return err
			}
			var rc *rest.Config
			if kubeconfig != "" {
				rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			} else {
				rc, err = rest.InClusterConfig()
			}
			if err != nil {
				return fmt.Errorf("API server: %w (give --kubeconfig outside a pod)", err)
			}
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
			defer stop()
			var mu sync.Mutex
			return dra.Run(ctx, dra.Config{
				Profiles: profiles, Namespaces: limited, Node: node, Client: client,
				RegistrarDir: registrar, DataDir: data, Devices: devices,
				Log: func(e dra.Event) {
					mu.Lock()
					defer mu.Unlock()
					if g.jsonOut() {
						g.printJSON(e)
						return
					}
					msg := "bpfgate: " + e.Action
					if e.Claim != "" {
						msg += " " + e.Claim
					}
					if len(e.CDI) > 0 {
						msg += " -> " + strings.Join(e.CDI, ",")
					}
					if e.Devices != 0 {
						msg += fmt.Sprintf(" (%d devices)", e.Devices)
					}
					if e.Error != "" {
						msg += ": " + e.Error
					}
					fmt.Fprintln(os.Stderr, msg)
				},
			})
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	cmd.Flags().StringVar(&node, "node", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	cmd.Flags().StringVar(&registrar, "registrar-dir", dra.DefaultRegistrarDir, "kubelet's plugin registration directory")
	cmd.Flags().StringVar(&data, "data-dir", dra.DefaultDataDir, "the driver's directory (its socket)")
	cmd.Flags().IntVar(&devices, "devices", dra.DefaultDevices, "devices per profile: how many claims on the node can hold one at once")
	cmd.AddCommand(newK8sDeviceClassesCmd(g))
	return cmd
}

func newK8sDeviceClassesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "device-classes",
		Short: "Print a DeviceClass per allowed profile (and namespace policies), for kubectl apply -f -",
		Long: `Print the DeviceClasses (resource.k8s.io/v1) that select the devices the
DRA driver publishes: one per profile the host allows (the config file's, or
the built-in ones when there is no file), named bpfgate-PROFILE, selecting
the driver's devices whose bpfgate.dev/profile attribute is PROFILE. A claim
names the class as its deviceClassName. The output is YAML documents
separated by ---; under --json, one List object. Both are what kubectl apply
-f - reads. A profile whose name is not a DNS label (lower case letters,
digits and '-', at most 55 characters) is refused, as the driver refuses
it: rename it in the policy.

For each profile limited to some namespaces (k8s_namespaces), it also
prints a ValidatingAdmissionPolicy and its binding, bpfgate-PROFILE-namespaces,
that refuse a ResourceClaim asking for its class in another namespace when
it is created, before the scheduler gives it a device.`,
		Example: `  bpfgate k8s dra device-classes | kubectl apply -f -
  bpfgate k8s dra device-classes --config node-policy.yaml > classes.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			profiles, limited, err := g.allowedProfiles()
			if err != nil {
				return err
			}
			classes, err := dra.DeviceClasses(profiles)
			if err != nil {
				return err
			}
			policies, bindings, err := dra.NamespacePolicies(limited)
			if err != nil {
				return err
			}
			var objs []any
			for i := range classes {
				objs = append(objs, &classes[i])
			}
			for i := range policies {
				objs = append(objs, &policies[i], &bindings[i])
			}
			if g.jsonOut() {
				return g.printJSON(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
			}
			return dra.WriteObjectsYAML(os.Stdout, objs...)
		},
	}
}
