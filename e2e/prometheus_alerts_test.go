package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestPrometheusAlertsOnCluster runs a real Prometheus server with the
// alerting rules of deploy/prometheus/tandem-alerts.yaml (their "for"
// durations cut to 2s) against a real three-node cluster's brokers and
// sidecars (the disk latency alerts aside):
//   - on the healthy cluster no alert fires;
//   - with node 3's pair SIGKILLed, TandemTargetDown fires for its broker
//     and its sidecar, and TandemUnderReplicated for the cluster, but not
//     TandemISRBelowMinInsync (two of three in sync);
//   - with node 2's pair SIGKILLed too, TandemISRBelowMinInsync fires,
//     and TandemNoLeader does not (node 1 still takes writes);
//   - with both back, every alert resolves.
func TestPrometheusAlertsOnCluster(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is missing: scripts/test.sh installs it (Debian package prometheus)")
	}
	brokerMetrics := map[int]string{1: testutil.FreeAddr(t), 2: testutil.FreeAddr(t), 3: testutil.FreeAddr(t)}
	sidecarMetrics := map[int]string{1: testutil.FreeAddr(t), 2: testutil.FreeAddr(t), 3: testutil.FreeAddr(t)}
	c := startCluster(t, clusterOpts{
		brokerFlagsFor:  func(id int) []string { return []string{"--metrics-listen", brokerMetrics[id]} },
		sidecarFlagsFor: func(id int) []string { return []string{"--metrics-listen", sidecarMetrics[id]} },
		sidecarFlags:    []string{"--replica-lag-time-max", "2s"},
	})

	dir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", "prometheus", "tandem-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules = regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAll(rules, []byte("$1 2s"))
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	targets := func(m map[int]string) string {
		var ts []string
		for id := 1; id <= 3; id++ {
			ts = append(ts, fmt.Sprintf("%q", m[id]))
		}
		return strings.Join(ts, ", ")
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: tandem-broker
    static_configs: [{targets: [%s]}]
  - job_name: tandem-sidecar
    static_configs: [{targets: [%s]}]
`, targets(brokerMetrics), targets(sidecarMetrics))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	web := testutil.FreeAddr(t)
	testutil.Start(t, testutil.ProcessConfig{Name: "prometheus", Path: prom, Dir: dir, Args: []string{
		"--config.file=prometheus.yml", "--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
		"--web.listen-address=" + web, "--log.level=warn",
	}})
	api := func(path string, v any) error {
		resp, err := http.Get("http://" + web + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	// Every target scraped.
	testutil.Eventually(t, 30*time.Second, func() error {
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := api("/api/v1/query?query="+url.QueryEscape(`sum(up{job=~"tandem.*"})`), &r); err != nil {
			return err
		}
		if len(r.Data.Result) != 1 || r.Data.Result[0].Value[1] != "6" {
			return fmt.Errorf("targets up: %v, want 6", r.Data.Result)
		}
		return nil
	})
	// firing lists the firing alerts as "name instance-or-job", but for
	// the latency alerts: they say how fast this machine's disk is, which
	// the test does not control (an fsync slower than 100 ms now and then
	// on a busy CI machine).
	slowDisk := map[string]bool{"TandemSlowFsync": true, "TandemSlowAcksAll": true}
	firing := func() ([]string, error) {
		var r struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if err := api("/api/v1/alerts", &r); err != nil {
			return nil, err
		}
		var out []string
		for _, a := range r.Data.Alerts {
			if a.State != "firing" || slowDisk[a.Labels["alertname"]] {
				continue
			}
			where := a.Labels["instance"]
			if where == "" {
				where = a.Labels["job"]
			}
			out = append(out, a.Labels["alertname"]+" "+where)
		}
		slices.Sort(out)
		return out, nil
	}
	expect := func(what string, want, not []string) {
		t.Helper()
		testutil.Eventually(t, 45*time.Second, func() error {
			got, err := firing()
			if err != nil {
				return err
			}
			for _, w := range want {
				if !slices.Contains(got, w) {
					return fmt.Errorf("%s: firing %v, want %s among them", what, got, w)
				}
			}
			for _, n := range not {
				for _, g := range got {
					if strings.HasPrefix(g, n+" ") {
						return fmt.Errorf("%s: %s fires", what, g)
					}
				}
			}
			return nil
		})
	}

	// A healthy cluster: several evaluations, no alert.
	time.Sleep(8 * time.Second)
	if got, err := firing(); err != nil || len(got) > 0 {
		t.Fatalf("on the healthy cluster: firing %v (%v)", got, err)
	}

	c.node(3).killPair()
	expect("node 3 killed",
		[]string{"TandemTargetDown " + brokerMetrics[3], "TandemTargetDown " + sidecarMetrics[3], "TandemUnderReplicated tandem-sidecar"},
		[]string{"TandemISRBelowMinInsync", "TandemNoLeader"})

	c.node(2).killPair()
	expect("nodes 2 and 3 killed", []string{"TandemISRBelowMinInsync tandem-sidecar"}, []string{"TandemNoLeader", "TandemTwoWriters"})

	c.node(2).startPair()
	c.node(3).startPair()
	c.waitInSync(60 * time.Second)
	testutil.Eventually(t, 45*time.Second, func() error {
		got, err := firing()
		if err == nil && len(got) > 0 {
			err = fmt.Errorf("with every node back: firing %v", got)
		}
		return err
	})
}
