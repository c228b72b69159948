// Package prometheus_test checks the alerting rules in tandem-alerts.yaml
// with Prometheus's own promtool: the rules load, and the unit tests in
// tandem-alerts-test.yaml (input series, the alerts they must and must not
// raise) pass and cover every alert. It also checks what promtool cannot
// know: every metric a rule reads is one the broker or the sidecar
// exports, so that a renamed metric does not leave an alert that never
// fires, and every section of the docs a description sends the operator
// to exists.
package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

type testFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// promtool runs promtool with args in dir and fails t with its output
// when it fails.
func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: scripts/test.sh installs it (Debian package prometheus)")
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s\n%s", strings.Join(args, " "), out)
}

// readRules reads tandem-alerts.yaml, refusing fields this test does not
// know.
func readRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile("tandem-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := yaml.UnmarshalStrict(raw, &rules); err != nil {
		t.Fatal(err)
	}
	return rules
}

func TestAlertRules(t *testing.T) {
	promtool(t, ".", "check", "rules", "tandem-alerts.yaml")
	rules := readRules(t)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || alerts[r.Alert] {
				t.Fatalf("group %s: a rule without an alert name, or %q twice", g.Name, r.Alert)
			}
			alerts[r.Alert] = true
			if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: wants a summary and a description", r.Alert)
			}
		}
	}

	// The unit tests, on a copy without the descriptions.
	dir := t.TempDir()
	stripped := rules
	for _, g := range stripped.Groups {
		for _, r := range g.Rules {
			delete(r.Annotations, "description")
		}
	}
	out, err := yaml.Marshal(stripped)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tandem-alerts.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("tandem-alerts-test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tandem-alerts-test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, dir, "test", "rules", "tandem-alerts-test.yaml")
	var tf testFile
	if err := yaml.Unmarshal(tests, &tf); err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			fired[a.Alertname] = fired[a.Alertname] || len(a.ExpAlerts) > 0
		}
	}
	for a := range alerts {
		if !fired[a] {
			t.Errorf("no test in tandem-alerts-test.yaml expects %s to fire", a)
		}
	}
}

// Every metric the rules read is exported by the broker or the sidecar
// (named in their code), and every docs section a description names is
// in docs/operations.md.
func TestAlertRulesMatchTheCode(t *testing.T) {
	rules := readRules(t)
	exported := map[string]bool{}
	name := regexp.MustCompile(`"(tandem_[a-z0-9_]+)"`)
	for _, pkg := range []string{"../../broker", "../../sidecar"} {
		files, err := filepath.Glob(filepath.Join(pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", pkg, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range name.FindAllStringSubmatch(string(src), -1) {
				exported[m[1]] = true
			}
		}
	}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\btandem_[a-z0-9_]+`)
	section := regexp.MustCompile(`docs/operations\.md, "([^"]+)"(?: and "([^"]+)")?`)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range used.FindAllString(r.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && exported[b] {
						base = b
					}
				}
				if !exported[base] {
					t.Errorf("%s reads %s, which neither the broker nor the sidecar exports", r.Alert, m)
				}
			}
			for _, m := range section.FindAllStringSubmatch(r.Annotations["description"], -1) {
				for _, s := range m[1:] {
					if s != "" && !strings.Contains(string(ops), "# "+s) && !strings.Contains(string(ops), "**"+s) {
						t.Errorf("%s sends the operator to docs/operations.md, %q, which has no such section", r.Alert, s)
					}
				}
			}
		}
	}
}
