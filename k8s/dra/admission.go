package dra

import (
	"fmt"
	"io"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// NamespacePolicyName is the name of the ValidatingAdmissionPolicy, and of
// its binding, that keeps profile's DeviceClass to its namespaces.
func NamespacePolicyName(profile string) string { return ClassPrefix + profile + "-namespaces" }

// NamespacePolicies are, for each profile limited to some Kubernetes
// namespaces (limited: profile -> namespaces, as profile.Profile's
// K8sNamespaces), a ValidatingAdmissionPolicy and its binding that refuse
// a ResourceClaim asking for the profile's DeviceClass in any other
// namespace, when it is created: the claims of ResourceClaimTemplates too,
// which the API server admits when the controller makes them. The driver
// refuses such claims when it prepares them, but the scheduler has given
// them devices by then, which other namespaces could so hold; refused at
// admission, they never get one. It holds while no other DeviceClass
// selects bpfgate's devices (DeviceClasses are the cluster admin's).
func NamespacePolicies(limited map[string][]string) ([]admissionv1.ValidatingAdmissionPolicy, []admissionv1.ValidatingAdmissionPolicyBinding, error) {
	profiles := make([]string, 0, len(limited))
	for p := range limited {
		profiles = append(profiles, p)
	}
	slices.Sort(profiles)
	var (
		policies []admissionv1.ValidatingAdmissionPolicy
		bindings []admissionv1.ValidatingAdmissionPolicyBinding
	)
	fail := admissionv1.Fail
	for _, p := range profiles {
		if err := checkProfile(p, MaxDevices); err != nil {
			return nil, nil, err
		}
		nss := limited[p]
		if len(nss) == 0 {
			return nil, nil, fmt.Errorf("%w: profile %q: no namespace to keep it to", ErrConfig, p)
		}
		class := DeviceClassName(p)
		name := NamespacePolicyName(p)
		meta := metav1.ObjectMeta{Name: name, Labels: map[string]string{ProfileLabel: p}}
		policies = append(policies, admissionv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: meta,
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: &fail,
				MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionv1.RuleWithOperations{
						Operations: []admissionv1.OperationType{admissionv1.Create},
						Rule: admissionv1.Rule{
							APIGroups: []string{resourceapi.GroupName}, APIVersions: []string{resourceapi.SchemeGroupVersion.Version},
							Resources: []string{"resourceclaims"},
						},
					},
				}}},
				Validations: []admissionv1.Validation{{
					Expression: ClaimNamespaceRule(class, nss),
					Message: fmt.Sprintf("bpfgate: the DeviceClass %s (profile %s) is for the namespaces %s only (k8s_namespaces in the nodes' bpfgate config)",
						class, p, strings.Join(nss, ", ")),
				}},
			},
		})
		bindings = append(bindings, admissionv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: meta,
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        name,
				ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			},
		})
	}
	return policies, bindings, nil
}

// ClaimNamespaceRule is the CEL rule a ResourceClaim (resource.k8s.io/v1)
// passes when none of its requests asks for class, directly or among its
// alternatives (firstAvailable), or when its namespace is one of nss.
func ClaimNamespaceRule(class string, nss []string) string {
	quoted := make([]string, len(nss))
	for i, ns := range nss {
		// Namespace names are DNS labels (profile checks them): nothing
		// to escape in a CEL string.
		quoted[i] = fmt.Sprintf("%q", ns)
	}
	return fmt.Sprintf(`request.namespace in [%s] || !has(object.spec.devices) || !has(object.spec.devices.requests) || `+
		`!object.spec.devices.requests.exists(r, (has(r.exactly) && r.exactly.deviceClassName == %q) || `+
		`(has(r.firstAvailable) && r.firstAvailable.exists(s, s.deviceClassName == %q)))`,
		strings.Join(quoted, ", "), class, class)
}

// WriteObjectsYAML writes objs as YAML documents separated by ---, as
// kubectl apply -f reads them.
func WriteObjectsYAML(w io.Writer, objs ...any) error {
	for i, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}
