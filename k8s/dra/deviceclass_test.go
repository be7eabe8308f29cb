package dra

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/yaml"
)

func TestDeviceClasses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		profiles []string
		want     []string // class names, in order
		wantErr  string
	}{
		{"one", []string{"demo"}, []string{"bpfgate-demo"}, ""},
		{"in the policy's order", []string{"tracing", "demo", "net-2"}, []string{"bpfgate-tracing", "bpfgate-demo", "bpfgate-net-2"}, ""},
		{"longest name", []string{strings.Repeat("a", 55)}, []string{"bpfgate-" + strings.Repeat("a", 55)}, ""},
		{"none", nil, nil, "allows none"},
		// The driver refuses these too (TestConfig): no mapping that two
		// profiles could share.
		{"upper case", []string{"demo", "Demo"}, nil, `profile "Demo" does not make a device or DeviceClass name`},
		{"underscore", []string{"my_tool"}, nil, `profile "my_tool"`},
		{"dot", []string{"a.b"}, nil, `profile "a.b"`},
		{"too long", []string{strings.Repeat("a", 56)}, nil, "at most 55 characters"},
		{"leading dash", []string{"-x"}, nil, `profile "-x"`},
		{"quote", []string{`a"||true`}, nil, "rename it in the host policy"},
		{"twice", []string{"demo", "demo"}, nil, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			classes, err := DeviceClasses(tc.profiles)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.wantErr) || classes != nil {
					t.Fatalf("%v, %v: want %v saying %q", classes, err, ErrConfig, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, c := range classes {
				names = append(names, c.Name)
				if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
					t.Errorf("class name %q: %s", c.Name, errs[0])
				}
				if c.APIVersion != "resource.k8s.io/v1" || c.Kind != "DeviceClass" {
					t.Errorf("%s: apiVersion %q kind %q", c.Name, c.APIVersion, c.Kind)
				}
				if c.Labels[ProfileLabel] != tc.profiles[i] {
					t.Errorf("%s: labels %v", c.Name, c.Labels)
				}
				if len(c.Spec.Selectors) != 1 || c.Spec.Selectors[0].CEL == nil {
					t.Fatalf("%s: selectors %+v", c.Name, c.Spec.Selectors)
				}
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("classes %q, want %q", names, tc.want)
			}
		})
	}
}

// TestSelector: the expression for demo is the one the control-plane
// test (test/k8s TestDRA) has the scheduler evaluate, and every class reads
// the attribute as Run publishes it: unqualified, so in the driver's
// domain. (The scheduler's compiler, k8s.io/dynamic-resource-allocation/cel,
// is not in this module's graph: it brings k8s.io/apiserver.)
func TestSelector(t *testing.T) {
	const demo = `device.driver == "bpfgate.dev" && device.attributes["bpfgate.dev"].profile == "demo"`
	if got := Selector("demo"); got != demo {
		t.Errorf("Selector(demo) = %s, want %s", got, demo)
	}
	profiles := []string{"demo", "demo-2"}
	classes, err := DeviceClasses(profiles)
	if err != nil {
		t.Fatal(err)
	}
	for i, dev := range devices(profiles, 1) {
		attr, ok := dev.Attributes[ProfileAttribute]
		if !ok || len(dev.Attributes) != 1 || attr.StringValue == nil || *attr.StringValue != profiles[i] {
			t.Fatalf("device %s: attributes %+v, want only %s: %s", dev.Name, dev.Attributes, ProfileAttribute, profiles[i])
		}
		want := `device.attributes["` + DriverName + `"].` + string(ProfileAttribute) + ` == "` + *attr.StringValue + `"`
		if expr := classes[i].Spec.Selectors[0].CEL.Expression; !strings.HasSuffix(expr, want) {
			t.Errorf("%s: %s does not end with %s", classes[i].Name, expr, want)
		}
	}
}

// TestWriteYAML: the documents read back as the classes.
func TestWriteYAML(t *testing.T) {
	classes, err := DeviceClasses([]string{"demo", "tracing"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteYAML(&b, classes); err != nil {
		t.Fatal(err)
	}
	if strings.Count(b.String(), "\n---\n") != 1 || strings.Contains(b.String(), "creationTimestamp") {
		t.Errorf("not two clean documents:\n%s", b.String())
	}
	dec := yaml.NewYAMLOrJSONDecoder(&b, 4096)
	for i := range classes {
		var got resourceapi.DeviceClass
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if got.Name != classes[i].Name || got.Spec.Selectors[0].CEL.Expression != classes[i].Spec.Selectors[0].CEL.Expression {
			t.Errorf("document %d: %+v, want %+v", i, got, classes[i])
		}
	}
}
