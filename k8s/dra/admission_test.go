package dra

import (
	"errors"
	"strings"
	"testing"
)

func TestNamespacePolicies(t *testing.T) {
	policies, bindings, err := NamespacePolicies(map[string][]string{"scoped": {"monitoring", "obs"}, "a": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(policies) != 2 || len(bindings) != 2 || policies[0].Name != "bpfgate-a-namespaces" || policies[1].Name != "bpfgate-scoped-namespaces" {
		t.Fatalf("policies %v, bindings %v: want one each for a and scoped, in that order", policies, bindings)
	}
	p, b := policies[1], bindings[1]
	if b.Spec.PolicyName != p.Name || len(b.Spec.ValidationActions) != 1 || b.Spec.ValidationActions[0] != "Deny" ||
		p.Labels[ProfileLabel] != "scoped" || *p.Spec.FailurePolicy != "Fail" {
		t.Errorf("policy %+v, binding %+v", p, b)
	}
	r := p.Spec.MatchConstraints.ResourceRules[0]
	if r.APIGroups[0] != "resource.k8s.io" || r.APIVersions[0] != "v1" || r.Resources[0] != "resourceclaims" || r.Operations[0] != "CREATE" {
		t.Errorf("match %+v", r)
	}
	v := p.Spec.Validations[0]
	for _, want := range []string{`request.namespace in ["monitoring", "obs"]`, `r.exactly.deviceClassName == "bpfgate-scoped"`, `s.deviceClassName == "bpfgate-scoped"`} {
		if !strings.Contains(v.Expression, want) {
			t.Errorf("rule %q lacks %q", v.Expression, want)
		}
	}
	if !strings.Contains(v.Message, "bpfgate-scoped (profile scoped) is for the namespaces monitoring, obs only") {
		t.Errorf("message %q", v.Message)
	}

	if p, b, err := NamespacePolicies(nil); err != nil || len(p) != 0 || len(b) != 0 {
		t.Errorf("no limited profile: %v %v %v", p, b, err)
	}
	for _, bad := range []map[string][]string{{"My_Tool": {"x"}}, {"empty": nil}} {
		if _, _, err := NamespacePolicies(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%v: %v, want ErrConfig", bad, err)
		}
	}
}
