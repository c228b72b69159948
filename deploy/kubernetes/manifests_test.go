// Package kubernetes_test checks the Kubernetes manifests in this directory
// without a cluster: every document of every *.yaml file must decode
// strictly into its k8s.io/api type (a misspelt or misplaced field fails),
// and the things that make a Tandem pod work must hold: the probes ask the
// sidecar's port for the health services the sidecar serves, both
// containers share the socket volume and agree on the socket path, the data
// directory is on the claim template, the pods run as non-root, and the
// Services and the PodDisruptionBudget select the StatefulSet's pods.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tandem-io/tandem/sidecar"
)

// newObject returns an empty typed object for apiVersion/kind, or nil when
// the manifests are not expected to hold that kind.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "v1/Service":
		return &corev1.Service{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	}
	return nil
}

// decodeStrict decodes one YAML document into its k8s.io/api type. Unknown
// or duplicated fields are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("reading apiVersion and kind: %w", err)
	}
	obj := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		return nil, fmt.Errorf("unexpected apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// splitDocuments splits a multi-document YAML stream, dropping empty ones.
func splitDocuments(b []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// stripComments drops whole-line comments, to tell an empty document.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// manifests holds every object decoded from this directory.
type manifests struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
}

// loadManifests decodes every document of every *.yaml file here.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.yaml manifests in deploy/kubernetes")
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitDocuments(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(docs) == 0 {
			t.Errorf("%s: no Kubernetes object in the file", f)
		}
		for i, doc := range docs {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s (document %d): %v", f, i+1, err)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.StatefulSet:
				m.statefulSets = append(m.statefulSets, o)
			case *corev1.Service:
				m.services = append(m.services, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// TestStrictDecoding shows that the decoder used on the manifests rejects
// what Kubernetes would reject or silently ignore.
func TestStrictDecoding(t *testing.T) {
	const base = `apiVersion: v1
kind: Service
metadata:
  name: x
spec:
  clusterIP: None
`
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"valid", base, ""},
		{"misspelt field", base + "  publishNotReadyAdresses: true\n", "unknown field"},
		{"field at the wrong level", base + "  name: y\n", "unknown field"},
		{"duplicated field", base + "  clusterIP: 10.0.0.1\n", "already set"},
		{"wrong type", base + "  ports: 9092\n", "cannot unmarshal"},
		{"unknown kind", "apiVersion: v1\nkind: Servce\nmetadata:\n  name: x\n", "unexpected apiVersion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tc.doc))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("decode: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("decode succeeded, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("decode error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestManifestsDecodeStrictly fails on any field Kubernetes does not know.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.statefulSets) != 1 {
		t.Errorf("want 1 StatefulSet, got %d", len(m.statefulSets))
	}
	if len(m.services) != 2 {
		t.Errorf("want 2 Services (peers and clients), got %d", len(m.services))
	}
	if len(m.pdbs) != 1 {
		t.Errorf("want 1 PodDisruptionBudget, got %d", len(m.pdbs))
	}
}

// flags turns a container's args into a map. Every arg must use the
// --name=value form (or --name alone for a boolean flag, read as "true"),
// so that the checks below read them reliably.
func flags(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	if len(c.Command) > 0 {
		t.Errorf("container %s: set args, not command (the image's entrypoint is the binary)", c.Name)
	}
	out := map[string]string{}
	for _, a := range c.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || name == "" {
			t.Errorf("container %s: arg %q is not --name=value", c.Name, a)
			continue
		}
		if !ok {
			value = "true"
		}
		if _, dup := out[name]; dup {
			t.Errorf("container %s: --%s given twice", c.Name, name)
		}
		out[name] = value
	}
	return out
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("pod template has no container %q", name)
	return corev1.Container{}
}

func port(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

func listenPort(t *testing.T, c corev1.Container, addr string) int32 {
	t.Helper()
	_, p, ok := strings.Cut(addr, ":")
	n, err := strconv.Atoi(p)
	if !ok || err != nil {
		t.Fatalf("container %s: --listen %q has no port", c.Name, addr)
	}
	return int32(n)
}

// mountFor returns the volume mounted at the deepest mount path that holds
// path in container c.
func mountFor(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/")
		if (path == dir || strings.HasPrefix(path, dir+"/")) && len(dir) >= len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, found
}

func TestStatefulSetPod(t *testing.T) {
	m := loadManifests(t)
	if len(m.statefulSets) != 1 {
		t.Fatalf("want 1 StatefulSet, got %d", len(m.statefulSets))
	}
	sts := m.statefulSets[0]
	spec := sts.Spec.Template.Spec
	broker := container(t, spec, "broker")
	sc := container(t, spec, "sidecar")
	bf, sf := flags(t, broker), flags(t, sc)

	t.Run("images", func(t *testing.T) {
		for c, want := range map[string]string{broker.Image: "tandem-broker:", sc.Image: "tandem-sidecar:"} {
			if !strings.HasPrefix(c, want) {
				t.Errorf("image %q, want %s<tag>", c, want)
			}
		}
	})

	t.Run("probes on the sidecar", func(t *testing.T) {
		grpcPort := port(t, sc, "grpc")
		if lp := listenPort(t, sc, sf["listen"]); lp != grpcPort {
			t.Errorf("sidecar --listen port %d differs from its grpc containerPort %d", lp, grpcPort)
		}
		probes := []struct {
			kind    string
			probe   *corev1.Probe
			service string
		}{
			{"liveness", sc.LivenessProbe, ""},
			{"readiness", sc.ReadinessProbe, sidecar.ReadinessService},
		}
		for _, p := range probes {
			if p.probe == nil || p.probe.GRPC == nil {
				t.Errorf("sidecar %s probe must be a native gRPC probe", p.kind)
				continue
			}
			if p.probe.GRPC.Port != grpcPort {
				t.Errorf("sidecar %s probe asks port %d, the sidecar serves health on %d", p.kind, p.probe.GRPC.Port, grpcPort)
			}
			if got := derefString(p.probe.GRPC.Service); got != p.service {
				t.Errorf("sidecar %s probe asks service %q, want %q", p.kind, got, p.service)
			}
		}
		if sc.StartupProbe != nil {
			t.Errorf("sidecar has a startup probe; liveness is served at once, nothing needs one")
		}
		if broker.LivenessProbe != nil || broker.ReadinessProbe != nil {
			t.Errorf("broker has probes; health is the sidecar's job (DESIGN.md decision 10)")
		}
	})

	t.Run("socket volume shared", func(t *testing.T) {
		sock := sf["broker-socket"]
		if sock == "" || bf["sidecar"] != sock {
			t.Fatalf("broker --sidecar %q and sidecar --broker-socket %q must be the same path", bf["sidecar"], sock)
		}
		bm, okB := mountFor(broker, sock)
		sm, okS := mountFor(sc, sock)
		if !okB || !okS {
			t.Fatalf("socket %s is not on a volume in both containers (broker %v, sidecar %v)", sock, okB, okS)
		}
		if bm.Name != sm.Name || bm.MountPath != sm.MountPath {
			t.Errorf("socket volume differs: broker %s at %s, sidecar %s at %s", bm.Name, bm.MountPath, sm.Name, sm.MountPath)
		}
		if filepath.Dir(sock) == strings.TrimSuffix(sm.MountPath, "/") {
			t.Errorf("socket %s sits at the volume root; the sidecar chmods its directory to 0700, which it cannot do to a root-owned emptyDir: use a subdirectory", sock)
		}
		var vol *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == sm.Name {
				vol = &spec.Volumes[i]
			}
		}
		if vol == nil || vol.EmptyDir == nil {
			t.Errorf("socket volume %q must be an emptyDir of the pod", sm.Name)
		}
	})

	t.Run("data on the claim template", func(t *testing.T) {
		dm, ok := mountFor(broker, bf["data-dir"])
		if !ok {
			t.Fatalf("broker --data-dir %q is not on a volume", bf["data-dir"])
		}
		var names []string
		for _, c := range sts.Spec.VolumeClaimTemplates {
			names = append(names, c.Name)
		}
		if !slices.Contains(names, dm.Name) {
			t.Errorf("data volume %q is not one of the volumeClaimTemplates %v", dm.Name, names)
		}
		for _, v := range spec.Volumes {
			if v.Name == dm.Name {
				t.Errorf("data volume %q is also a pod volume; it must come from the claim template only", v.Name)
			}
		}
	})

	t.Run("non-root", func(t *testing.T) {
		psc := spec.SecurityContext
		if psc == nil || !derefBool(psc.RunAsNonRoot) {
			t.Errorf("pod securityContext.runAsNonRoot must be true")
		}
		if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("pod securityContext.runAsUser must be a non-zero uid (the images use 65532)")
		}
		if psc == nil || psc.FSGroup == nil {
			t.Errorf("pod securityContext.fsGroup must be set so the data volume is writable")
		}
		for _, c := range spec.Containers {
			if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
			}
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == 0 {
				t.Errorf("container %s runs as root", c.Name)
			}
		}
	})

	t.Run("node ids and peers", func(t *testing.T) {
		replicas := derefInt32(sts.Spec.Replicas, 1)
		start := int32(0)
		if sts.Spec.Ordinals != nil {
			start = sts.Spec.Ordinals.Start
		}
		if start != 1 {
			t.Errorf("ordinals.start is %d; it must be 1 so that pod tandem-N is node N (node ids are positive)", start)
		}
		for _, c := range []corev1.Container{broker, sc} {
			if flags(t, c)["node-id"] != "$(NODE_ID)" {
				t.Errorf("container %s: --node-id must be $(NODE_ID)", c.Name)
			}
			if src := envFieldPath(c, "NODE_ID"); src != "metadata.labels['apps.kubernetes.io/pod-index']" {
				t.Errorf("container %s: NODE_ID comes from %q, want the pod-index label", c.Name, src)
			}
		}
		peers, err := sidecar.ParsePeers(sf["peers"])
		if err != nil {
			t.Fatalf("sidecar --peers: %v", err)
		}
		grpcPort := port(t, sc, "grpc")
		for i := start; i < start+replicas; i++ {
			want := fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, grpcPort)
			if got := peers[i]; got != want {
				t.Errorf("--peers entry for node %d is %q, want %q", i, got, want)
			}
		}
		if len(peers) != int(replicas) {
			t.Errorf("--peers lists %d nodes, the StatefulSet has %d replicas", len(peers), replicas)
		}
		leader, err := strconv.Atoi(sf["leader"])
		if err != nil || peers[int32(leader)] == "" {
			t.Errorf("--leader %q is not one of the peers", sf["leader"])
		}
		wantAdv := fmt.Sprintf("$(POD_NAME).%s.$(POD_NAMESPACE).svc.cluster.local:%d", sts.Spec.ServiceName, port(t, broker, "kafka"))
		if bf["advertise"] != wantAdv {
			t.Errorf("broker --advertise %q, want %q (the pod's stable DNS name)", bf["advertise"], wantAdv)
		}
		if lp := listenPort(t, broker, bf["listen"]); lp != port(t, broker, "kafka") {
			t.Errorf("broker --listen port %d differs from its kafka containerPort", lp)
		}
	})
}

func TestServicesAndBudget(t *testing.T) {
	m := loadManifests(t)
	if len(m.statefulSets) != 1 {
		t.Fatalf("want 1 StatefulSet, got %d", len(m.statefulSets))
	}
	sts := m.statefulSets[0]
	podLabels := labels.Set(sts.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		t.Fatalf("StatefulSet selector: %v", err)
	}
	if !sel.Matches(podLabels) {
		t.Fatalf("StatefulSet selector %s does not match its pod labels %v", sel, podLabels)
	}
	byName := map[string]*corev1.Service{}
	for _, s := range m.services {
		byName[s.Name] = s
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selector %v does not select the StatefulSet's pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() != "kafka" && p.TargetPort.String() != "grpc" {
				t.Errorf("Service %s port %s targets %q, want a named container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	peers := byName[sts.Spec.ServiceName]
	switch {
	case peers == nil:
		t.Errorf("StatefulSet serviceName %q has no Service", sts.Spec.ServiceName)
	case peers.Spec.ClusterIP != corev1.ClusterIPNone:
		t.Errorf("peer Service %s must be headless (clusterIP: None)", peers.Name)
	case !peers.Spec.PublishNotReadyAddresses:
		t.Errorf("peer Service %s must publish not-ready addresses: followers are not ready until they reach the leader", peers.Name)
	}
	var clients []*corev1.Service
	for _, s := range m.services {
		if s != peers {
			clients = append(clients, s)
		}
	}
	if len(clients) != 1 {
		t.Fatalf("want one client Service besides %s, got %d", sts.Spec.ServiceName, len(clients))
	}
	if c := clients[0]; c.Spec.ClusterIP == corev1.ClusterIPNone || c.Spec.PublishNotReadyAddresses {
		t.Errorf("client Service %s must be a normal Service with only ready endpoints", c.Name)
	}
	if len(m.pdbs) != 1 {
		t.Fatalf("want 1 PodDisruptionBudget, got %d", len(m.pdbs))
	}
	pdb := m.pdbs[0]
	psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !psel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget %s does not select the StatefulSet's pods (%v)", pdb.Name, err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %s: want maxUnavailable: 1", pdb.Name)
	}
}

func envFieldPath(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefBool(p *bool) bool { return p != nil && *p }

func derefInt32(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}
