// Package compose_test checks compose.yaml without Docker: that each
// broker and its sidecar agree on the socket path and share its volume,
// that the healthcheck asks the sidecar's port for the readiness service
// the sidecar serves, and that node ids, peers, ports and advertised
// addresses line up. The Docker tests (e2e/docker_*_test.go) run the file
// for real.
package compose_test

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tandem-io/tandem/sidecar"
)

// composeFile is the part of the Compose file format the checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string   `json:"image"`
		ReadOnly    bool     `json:"read_only"`
		CapDrop     []string `json:"cap_drop"`
		SecurityOpt []string `json:"security_opt"`
		Command     []string `json:"command"`
		Ports       []string `json:"ports"`
		Volumes     []string `json:"volumes"`
		Healthcheck *struct {
			Test []string `json:"test"`
		} `json:"healthcheck"`
	} `json:"services"`
	Volumes map[string]any `json:"volumes"`
}

var varRef = regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::-([^}]*))?\}`)

// defaults replaces every ${VAR:-default} with its default, as Compose
// does when VAR is unset. A reference without a default fails the test:
// the file must run with no environment at all.
func defaults(t *testing.T, s string) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		if !strings.Contains(m, ":-") {
			t.Errorf("%s has no default; compose.yaml must work with no environment set", m)
		}
		return sub[2]
	})
}

func load(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Comments may mention variables without defaults; drop them first.
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	var f composeFile
	if err := yaml.Unmarshal([]byte(defaults(t, strings.Join(lines, "\n"))), &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return f
}

// flagMap reads --name=value arguments.
func flagMap(t *testing.T, svc string, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("%s: argument %q is not --name=value", svc, a)
			continue
		}
		out[name] = value
	}
	return out
}

// volumeFor returns the named volume whose mount holds file (the deepest).
func volumeFor(vols []string, file string) (name, mount string, ok bool) {
	best := ""
	for _, v := range vols {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		m := strings.TrimSuffix(parts[1], "/")
		if (file == m || strings.HasPrefix(file, m+"/")) && len(m) > len(best) {
			name, mount, ok, best = parts[0], m, true, m
		}
	}
	return name, mount, ok
}

// port returns the port of host:port.
func port(addr string) string {
	return addr[strings.LastIndex(addr, ":")+1:]
}

func TestComposePairs(t *testing.T) {
	f := load(t)
	const nodes = 3
	if len(f.Services) != 2*nodes {
		t.Fatalf("compose.yaml has %d services, want %d (a broker and a sidecar per node)", len(f.Services), 2*nodes)
	}
	var peers []string
	for n := 1; n <= nodes; n++ {
		peers = append(peers, fmt.Sprintf("%d=sidecar-%d:9192", n, n))
	}
	for n := 1; n <= nodes; n++ {
		bName, sName := fmt.Sprintf("broker-%d", n), fmt.Sprintf("sidecar-%d", n)
		t.Run(fmt.Sprintf("node %d", n), func(t *testing.T) {
			b, okB := f.Services[bName]
			s, okS := f.Services[sName]
			if !okB || !okS {
				t.Fatalf("services %s and %s must both exist", bName, sName)
			}
			bf, sf := flagMap(t, bName, b.Command), flagMap(t, sName, s.Command)
			if !strings.HasPrefix(b.Image, "tandem-broker:") || !strings.HasPrefix(s.Image, "tandem-sidecar:") {
				t.Errorf("images %q and %q, want tandem-broker:<tag> and tandem-sidecar:<tag>", b.Image, s.Image)
			}
			for name, svc := range map[string][]string{bName: b.CapDrop, sName: s.CapDrop} {
				if !slices.Contains(svc, "ALL") {
					t.Errorf("%s must drop all capabilities (cap_drop: [ALL])", name)
				}
			}
			for name, svc := range map[string][]string{bName: b.SecurityOpt, sName: s.SecurityOpt} {
				if !slices.Contains(svc, "no-new-privileges:true") {
					t.Errorf("%s must set security_opt no-new-privileges:true", name)
				}
			}
			if !b.ReadOnly || !s.ReadOnly {
				t.Errorf("%s and %s must have read_only: true (only volumes are writable)", bName, sName)
			}
			id := strconv.Itoa(n)
			if bf["node-id"] != id || sf["node-id"] != id {
				t.Errorf("node ids %q (broker) and %q (sidecar), want %s", bf["node-id"], sf["node-id"], id)
			}

			// The socket: same path, same named volume, in a subdirectory.
			sock := sf["broker-socket"]
			if sock == "" || bf["sidecar"] != sock {
				t.Fatalf("broker --sidecar %q and sidecar --broker-socket %q must be the same path", bf["sidecar"], sock)
			}
			bv, bm, ok1 := volumeFor(b.Volumes, sock)
			sv, sm, ok2 := volumeFor(s.Volumes, sock)
			if !ok1 || !ok2 || bv != sv || bm != sm {
				t.Errorf("socket %s must be on one named volume mounted at the same path in both (broker %s at %s, sidecar %s at %s)", sock, bv, bm, sv, sm)
			}
			if _, declared := f.Volumes[sv]; !declared {
				t.Errorf("socket volume %q is not a named volume of the file", sv)
			}
			if path.Dir(sock) == sm {
				t.Errorf("socket %s sits at the volume root; keep it in a subdirectory the sidecar can restrict to 0700", sock)
			}

			// Data on its own named volume.
			dv, _, ok := volumeFor(b.Volumes, bf["data-dir"])
			if _, declared := f.Volumes[dv]; !ok || !declared || dv == sv {
				t.Errorf("broker --data-dir %q must be on its own named volume (got %q)", bf["data-dir"], dv)
			}

			// Kafka: published port = advertised port, target = listen port.
			if len(b.Ports) != 1 {
				t.Fatalf("%s publishes %v, want one Kafka port", bName, b.Ports)
			}
			published, target, _ := strings.Cut(b.Ports[0], ":")
			if target != port(bf["listen"]) || !strings.HasPrefix(bf["listen"], "0.0.0.0:") {
				t.Errorf("%s publishes %s but listens on %s; listen on 0.0.0.0:<target>", bName, b.Ports[0], bf["listen"])
			}
			if port(bf["advertise"]) != published {
				t.Errorf("%s advertises %s, not its published port %s", bName, bf["advertise"], published)
			}

			// Peers by service name; the healthcheck asks readiness on the
			// sidecar's own port.
			if sf["peers"] != strings.Join(peers, ",") {
				t.Errorf("%s --peers %q, want %q", sName, sf["peers"], strings.Join(peers, ","))
			}
			if len(s.Ports) != 0 {
				t.Errorf("%s publishes %v; the admin API must stay on the compose network", sName, s.Ports)
			}
			if s.Healthcheck == nil {
				t.Fatalf("%s has no healthcheck", sName)
			}
			test := s.Healthcheck.Test
			wantTest := []string{"CMD", "/usr/local/bin/grpc-health-probe",
				"-addr=127.0.0.1:" + port(sf["listen"]), "-service=" + sidecar.ReadinessService}
			for _, w := range wantTest {
				if !slices.Contains(test, w) {
					t.Errorf("%s healthcheck %q lacks %q (exec form, the image has no shell)", sName, test, w)
				}
			}
			if b.Healthcheck != nil {
				t.Errorf("%s has a healthcheck; health is the sidecar's job", bName)
			}
		})
	}
}
