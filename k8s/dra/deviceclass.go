package dra

import (
	"fmt"
	"io"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ClassPrefix begins the name of every DeviceClass DeviceClasses makes:
// bpfgate-PROFILE.
const ClassPrefix = "bpfgate-"

// ProfileLabel is the label on a generated DeviceClass that names its
// profile, so that the classes of one profile, or all of bpfgate's, can
// be listed and deleted with a label selector.
const ProfileLabel = DriverName + "/profile"

// DeviceClassName is the name of the DeviceClass that selects profile's
// devices: claims name it as their deviceClassName.
func DeviceClassName(profile string) string { return ClassPrefix + profile }

// Selector is the CEL expression that selects profile's devices: this
// driver's devices whose profile attribute, as Run publishes it, is
// profile. profile must be a DNS label (checkProfile), which needs no
// escaping in a CEL string.
func Selector(profile string) string {
	return fmt.Sprintf("device.driver == %q && device.attributes[%q].%s == %q", DriverName, DriverName, ProfileAttribute, profile)
}

// checkProfile refuses a profile whose names cannot be Kubernetes names:
// the devices Run publishes for it (up to devices of them) and its
// DeviceClass must be DNS labels. Run and DeviceClasses refuse the same
// profiles, so every device the driver publishes has a class.
func checkProfile(p string, devices int) error {
	for _, name := range []string{DeviceName(p, devices-1), DeviceClassName(p)} {
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return fmt.Errorf("%w: profile %q does not make a device or DeviceClass name (%s): %s: rename it in the host policy (lower case letters, digits and '-', at most %d characters)",
				ErrConfig, p, name, errs[0], validation.DNS1123LabelMaxLength-len(ClassPrefix))
		}
	}
	return nil
}

// DeviceClasses are the DeviceClasses (resource.k8s.io/v1, the version Run
// publishes ResourceSlices with) for profiles, one each, in their order:
// DeviceClassName(profile), selecting its devices with Selector(profile).
// A profile whose name cannot be a DNS label is refused, as Run refuses
// it.
func DeviceClasses(profiles []string) ([]resourceapi.DeviceClass, error) {
	if len(profiles) == 0 {
		return nil, fmt.Errorf("%w: no profile to make a DeviceClass for: the host policy allows none", ErrConfig)
	}
	seen := make(map[string]bool, len(profiles))
	classes := make([]resourceapi.DeviceClass, 0, len(profiles))
	for _, p := range profiles {
		// Any number of devices up to MaxDevices: the class does not
		// depend on how many the driver publishes.
		if err := checkProfile(p, MaxDevices); err != nil {
			return nil, err
		}
		if seen[p] {
			return nil, fmt.Errorf("%w: profile %q is given twice", ErrConfig, p)
		}
		seen[p] = true
		classes = append(classes, resourceapi.DeviceClass{
			TypeMeta: metav1.TypeMeta{APIVersion: resourceapi.SchemeGroupVersion.String(), Kind: "DeviceClass"},
			ObjectMeta: metav1.ObjectMeta{
				Name:   DeviceClassName(p),
				Labels: map[string]string{ProfileLabel: p},
			},
			Spec: resourceapi.DeviceClassSpec{
				Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: Selector(p)}}},
			},
		})
	}
	return classes, nil
}

// WriteYAML writes classes as YAML documents separated by ---, as
// kubectl apply -f reads them.
func WriteYAML(w io.Writer, classes []resourceapi.DeviceClass) error {
	objs := make([]any, len(classes))
	for i := range classes {
		objs[i] = &classes[i]
	}
	return WriteObjectsYAML(w, objs...)
}
