// Package kubernetes_test renders herd's Kubernetes manifests (the
// kustomize overlays in this directory) in-process and checks what a cluster
// would only find out when applying them or when something fails to start:
// every object decodes strictly into its Kubernetes type, and the objects,
// NATS's configuration and herd's own configuration agree with each other
// and with herd's wire names.
package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/streams"
)

// overlays are the deployable kustomizations under overlays/.
var overlays = []string{"small", "three-zone"}

const (
	namespace     = "herd"
	passwordsFile = "passwords.env"
	authConf      = "../nats/auth.conf"
	// secretName is the Secret the overlays generate from passwords.env.
	secretName = "nats-passwords"
)

// scaledObject mirrors the fields of KEDA's keda.sh/v1alpha1 ScaledObject
// (keda.sh/docs, "ScaledObject specification") that herd may use, so that
// strict decoding rejects a misspelt or misplaced one.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Advanced              *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Fallback *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			MetricType        string            `json:"metricType,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// jetStreamTriggerKeys are the nats-jetstream trigger's documented metadata
// keys (keda.sh/docs/scalers/nats-jetstream).
var jetStreamTriggerKeys = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer",
	"lagThreshold", "activationLagThreshold", "useHttps"}

// podMonitor mirrors the Prometheus operator's monitoring.coreos.com/v1
// PodMonitor fields herd may use.
type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port,omitempty"`
			PortNumber    *int32 `json:"portNumber,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// render is one overlay's output, decoded.
type render struct {
	namespaces    []corev1.Namespace
	services      []corev1.Service
	configMaps    []corev1.ConfigMap
	secrets       []corev1.Secret
	deployments   []appsv1.Deployment
	statefulSets  []appsv1.StatefulSet
	pdbs          []policyv1.PodDisruptionBudget
	policies      []networkingv1.NetworkPolicy
	scaledObjects []scaledObject
	podMonitors   []podMonitor
}

// pod is a workload's pod template with where it came from.
type pod struct {
	owner string
	meta  metav1.ObjectMeta
	spec  corev1.PodSpec
	// claims are the StatefulSet's volume claim templates, mountable as volumes.
	claims []string
}

func (r *render) pods() []pod {
	var ps []pod
	for _, d := range r.deployments {
		ps = append(ps, pod{owner: "Deployment/" + d.Name, meta: d.Spec.Template.ObjectMeta, spec: d.Spec.Template.Spec})
	}
	for _, s := range r.statefulSets {
		p := pod{owner: "StatefulSet/" + s.Name, meta: s.Spec.Template.ObjectMeta, spec: s.Spec.Template.Spec}
		for _, c := range s.Spec.VolumeClaimTemplates {
			p.claims = append(p.claims, c.Name)
		}
		ps = append(ps, p)
	}
	return ps
}

// podsMatching returns the pods whose labels sel selects.
func (r *render) podsMatching(t *testing.T, sel labels.Selector) []pod {
	t.Helper()
	var ps []pod
	for _, p := range r.pods() {
		if sel.Matches(labels.Set(p.meta.Labels)) {
			ps = append(ps, p)
		}
	}
	return ps
}

func (r *render) configMap(name string) *corev1.ConfigMap {
	for i := range r.configMaps {
		if r.configMaps[i].Name == name {
			return &r.configMaps[i]
		}
	}
	return nil
}

func (r *render) secret(name string) *corev1.Secret {
	for i := range r.secrets {
		if r.secrets[i].Name == name {
			return &r.secrets[i]
		}
	}
	return nil
}

func (r *render) service(name string) *corev1.Service {
	for i := range r.services {
		if r.services[i].Name == name {
			return &r.services[i]
		}
	}
	return nil
}

func (r *render) deployment(name string) *appsv1.Deployment {
	for i := range r.deployments {
		if r.deployments[i].Name == name {
			return &r.deployments[i]
		}
	}
	return nil
}

// generatedSecret returns the Secret the overlay generated from
// passwords.env (its name carries kustomize's hash suffix).
func (r *render) generatedSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	for i := range r.secrets {
		if strings.HasPrefix(r.secrets[i].Name, secretName+"-") {
			return &r.secrets[i]
		}
	}
	t.Fatalf("no Secret %s-<hash> in the render", secretName)
	return nil
}

// renderOverlay copies this directory to a temporary one, writes the
// overlay's passwords.env from passwords.env.example (as a user would, with
// the placeholders), and renders the overlay with kustomize's Go API.
func renderOverlay(t *testing.T, overlay string) *render {
	dir := t.TempDir()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, ".go") || filepath.Base(path) == passwordsFile {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("passwords.env.example")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "overlays", overlay)
	if err := os.WriteFile(filepath.Join(root, passwordsFile), example, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), root)
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	r := &render{}
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		id := res.GetApiVersion() + " " + res.GetKind() + "/" + res.GetName()
		var target any
		switch res.GetApiVersion() + " " + res.GetKind() {
		case "v1 Namespace":
			r.namespaces = append(r.namespaces, corev1.Namespace{})
			target = &r.namespaces[len(r.namespaces)-1]
		case "v1 Service":
			r.services = append(r.services, corev1.Service{})
			target = &r.services[len(r.services)-1]
		case "v1 ConfigMap":
			r.configMaps = append(r.configMaps, corev1.ConfigMap{})
			target = &r.configMaps[len(r.configMaps)-1]
		case "v1 Secret":
			r.secrets = append(r.secrets, corev1.Secret{})
			target = &r.secrets[len(r.secrets)-1]
		case "apps/v1 Deployment":
			r.deployments = append(r.deployments, appsv1.Deployment{})
			target = &r.deployments[len(r.deployments)-1]
		case "apps/v1 StatefulSet":
			r.statefulSets = append(r.statefulSets, appsv1.StatefulSet{})
			target = &r.statefulSets[len(r.statefulSets)-1]
		case "policy/v1 PodDisruptionBudget":
			r.pdbs = append(r.pdbs, policyv1.PodDisruptionBudget{})
			target = &r.pdbs[len(r.pdbs)-1]
		case "networking.k8s.io/v1 NetworkPolicy":
			r.policies = append(r.policies, networkingv1.NetworkPolicy{})
			target = &r.policies[len(r.policies)-1]
		case "keda.sh/v1alpha1 ScaledObject":
			r.scaledObjects = append(r.scaledObjects, scaledObject{})
			target = &r.scaledObjects[len(r.scaledObjects)-1]
		case "monitoring.coreos.com/v1 PodMonitor":
			r.podMonitors = append(r.podMonitors, podMonitor{})
			target = &r.podMonitors[len(r.podMonitors)-1]
		default:
			t.Errorf("%s: a kind this test does not know; add its type", id)
			continue
		}
		if err := yaml.UnmarshalStrict(y, target); err != nil {
			t.Errorf("%s does not decode strictly: %v", id, err)
		}
		if res.GetKind() != "Namespace" && res.GetNamespace() != namespace {
			t.Errorf("%s is in namespace %q, not %q", id, res.GetNamespace(), namespace)
		}
	}
	return r
}

func TestKubernetes(t *testing.T) {
	clearEnv(t, "HERD_", "NATS_PASSWORD_", "OLLAMA_HOST", "POD_NAME")
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := renderOverlay(t, overlay)
			if len(r.namespaces) != 1 || r.namespaces[0].Name != namespace {
				t.Errorf("want the Namespace %s once, got %d", namespace, len(r.namespaces))
			}
			t.Run("workloads", func(t *testing.T) { checkWorkloads(t, r) })
			t.Run("references", func(t *testing.T) { checkReferences(t, r) })
			t.Run("services", func(t *testing.T) { checkServices(t, r) })
			t.Run("disruption budgets", func(t *testing.T) { checkPDBs(t, r) })
			t.Run("network policies", func(t *testing.T) { checkPolicies(t, r) })
			t.Run("pod monitors", func(t *testing.T) { checkPodMonitors(t, r) })
			opts := checkNATS(t, r)
			cfgs := checkHerdConfig(t, r, opts)
			t.Run("autoscaling", func(t *testing.T) { checkScaledObject(t, r, opts, cfgs) })
		})
	}
}

// TestAuthConfIsDeployNATS checks that the copy kustomize may read (it
// loads nothing outside the kustomization's directory) is the shipped file.
func TestAuthConfIsDeployNATS(t *testing.T) {
	want, err := os.ReadFile(authConf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("base/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("base/nats/auth.conf differs from deploy/nats/auth.conf: cp deploy/nats/auth.conf deploy/kubernetes/base/nats/auth.conf")
	}
}

// TestNoPasswordsCommitted checks that no passwords.env sits in the tree
// (git ignores it; this catches a forced add) and the example holds only
// placeholders.
func TestNoPasswordsCommitted(t *testing.T) {
	_ = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == passwordsFile {
			t.Logf("%s exists here (yours, ignored by git)", path)
		}
		return nil
	})
	b, err := os.ReadFile("passwords.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		_, v, _ := strings.Cut(line, "=")
		if !strings.HasPrefix(v, "change-me-") {
			t.Errorf("passwords.env.example: %q is not a change-me- placeholder", line)
		}
	}
	ignore, err := os.ReadFile(".gitignore")
	if err != nil || !strings.Contains(string(ignore), passwordsFile) {
		t.Errorf(".gitignore here must ignore %s", passwordsFile)
	}
}

// clearEnv keeps the developer's own settings out of the loads below and
// restores them afterwards.
func clearEnv(t *testing.T, prefixes ...string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				t.Setenv(k, "")
				_ = os.Unsetenv(k)
			}
		}
	}
}

func containers(spec corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func selector(t *testing.T, what string, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if s == nil {
		t.Fatalf("%s: no selector", what)
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return sel
}

// hasPort reports whether one of p's containers declares port (by name or
// number).
func hasPort(p pod, port intstr.IntOrString) bool {
	for _, c := range containers(p.spec) {
		for _, cp := range c.Ports {
			if port.Type == intstr.String && cp.Name == port.StrVal || port.Type == intstr.Int && cp.ContainerPort == port.IntVal {
				return true
			}
		}
	}
	return false
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %s", c.Name, name)
	return 0
}

func checkWorkloads(t *testing.T, r *render) {
	check := func(owner string, sel *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) {
		if !selector(t, owner, sel).Matches(labels.Set(tmpl.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v", owner, sel.MatchLabels, tmpl.Labels)
		}
	}
	for _, d := range r.deployments {
		check("Deployment/"+d.Name, d.Spec.Selector, d.Spec.Template)
	}
	for _, s := range r.statefulSets {
		check("StatefulSet/"+s.Name, s.Spec.Selector, s.Spec.Template)
		svc := r.service(s.Spec.ServiceName)
		if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("StatefulSet/%s: serviceName %q is not a headless Service of the render", s.Name, s.Spec.ServiceName)
		}
	}
	// herd's own containers all run the one image the overlay names (the
	// base's bare "herd" would be pulled from Docker Hub's library).
	herdImages := map[string]bool{}
	for _, p := range r.pods() {
		for _, c := range containers(p.spec) {
			if !strings.HasPrefix(c.Image, "nats:") && !strings.HasPrefix(c.Image, "ollama/") {
				herdImages[c.Image] = true
			}
		}
	}
	if len(herdImages) != 1 {
		t.Errorf("herd's containers run %d images, want one: %v", len(herdImages), herdImages)
	}
	for img := range herdImages {
		if !strings.Contains(img, "/") {
			t.Errorf("herd's image %q names no registry: set it in the overlay's images", img)
		}
	}
	for _, p := range r.pods() {
		names := map[string]bool{}
		for _, c := range containers(p.spec) {
			// The kubelet refuses runAsNonRoot for an image whose user is a
			// name (herd's distroless "nonroot") unless runAsUser is set.
			nonRoot, user := false, (*int64)(nil)
			if sc := p.spec.SecurityContext; sc != nil {
				nonRoot, user = sc.RunAsNonRoot != nil && *sc.RunAsNonRoot, sc.RunAsUser
			}
			if sc := c.SecurityContext; sc != nil {
				if sc.RunAsNonRoot != nil {
					nonRoot = *sc.RunAsNonRoot
				}
				if sc.RunAsUser != nil {
					user = sc.RunAsUser
				}
			}
			if nonRoot && (user == nil || *user == 0) {
				t.Errorf("%s/%s: runAsNonRoot without a non-zero runAsUser", p.owner, c.Name)
			}
			if names[c.Name] {
				t.Errorf("%s: two containers named %s", p.owner, c.Name)
			}
			names[c.Name] = true
			if c.Image == "" {
				t.Errorf("%s/%s: no image", p.owner, c.Name)
			}
			ports := map[string]bool{}
			for _, cp := range c.Ports {
				if cp.Name == "" || ports[cp.Name] {
					t.Errorf("%s/%s: port %d unnamed or named twice", p.owner, c.Name, cp.ContainerPort)
				}
				ports[cp.Name] = true
			}
			for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
				if pr != nil && pr.HTTPGet != nil && !hasPort(pod{spec: corev1.PodSpec{Containers: []corev1.Container{c}}}, pr.HTTPGet.Port) {
					t.Errorf("%s/%s: probe on port %s the container does not declare", p.owner, c.Name, pr.HTTPGet.Port.String())
				}
			}
		}
	}
}

func checkReferences(t *testing.T, r *render) {
	secretKey := func(owner, name, key string) {
		s := r.secret(name)
		if s == nil {
			t.Errorf("%s: Secret %q is not in the render", owner, name)
			return
		}
		if _, ok := s.Data[key]; key != "" && !ok {
			t.Errorf("%s: Secret %s has no key %s", owner, name, key)
		}
	}
	configKey := func(owner, name, key string) {
		cm := r.configMap(name)
		if cm == nil {
			t.Errorf("%s: ConfigMap %q is not in the render", owner, name)
			return
		}
		if _, ok := cm.Data[key]; key != "" && !ok {
			t.Errorf("%s: ConfigMap %s has no key %s", owner, name, key)
		}
	}
	for _, p := range r.pods() {
		volumes := map[string]bool{}
		for _, c := range p.claims {
			volumes[c] = true
		}
		for _, v := range p.spec.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil {
				configKey(p.owner, v.ConfigMap.Name, "")
			}
			if v.Secret != nil {
				secretKey(p.owner, v.Secret.SecretName, "")
			}
		}
		for _, c := range containers(p.spec) {
			owner := p.owner + "/" + c.Name
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s mounts volume %q the pod does not have", owner, m.Name)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					secretKey(owner, e.SecretRef.Name, "")
				}
				if e.ConfigMapRef != nil {
					configKey(owner, e.ConfigMapRef.Name, "")
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if k := e.ValueFrom.SecretKeyRef; k != nil {
					secretKey(owner, k.Name, k.Key)
				}
				if k := e.ValueFrom.ConfigMapKeyRef; k != nil {
					configKey(owner, k.Name, k.Key)
				}
			}
		}
	}
}

func checkServices(t *testing.T, r *render) {
	for _, s := range r.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		pods := r.podsMatching(t, sel)
		if len(s.Spec.Selector) == 0 || len(pods) == 0 {
			t.Errorf("Service/%s: selector %v matches no pod of the render", s.Name, s.Spec.Selector)
			continue
		}
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			for _, p := range pods {
				if !hasPort(p, target) {
					t.Errorf("Service/%s port %s: %s declares no container port %s", s.Name, sp.Name, p.owner, target.String())
				}
			}
		}
	}
}

func checkPDBs(t *testing.T, r *render) {
	for _, b := range r.pdbs {
		if len(r.podsMatching(t, selector(t, "PodDisruptionBudget/"+b.Name, b.Spec.Selector))) == 0 {
			t.Errorf("PodDisruptionBudget/%s selects no pod", b.Name)
		}
	}
}

func checkPolicies(t *testing.T, r *render) {
	for _, np := range r.policies {
		what := "NetworkPolicy/" + np.Name
		targets := r.podsMatching(t, selector(t, what, &np.Spec.PodSelector))
		if len(targets) == 0 {
			t.Errorf("%s: podSelector matches no pod", what)
		}
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.PodSelector != nil && peer.NamespaceSelector == nil &&
					len(r.podsMatching(t, selector(t, what, peer.PodSelector))) == 0 {
					t.Errorf("%s: from podSelector %v matches no pod", what, peer.PodSelector.MatchLabels)
				}
			}
			for _, port := range rule.Ports {
				if port.Port == nil {
					continue
				}
				for _, p := range targets {
					if !hasPort(p, *port.Port) {
						t.Errorf("%s: %s declares no port %s", what, p.owner, port.Port.String())
					}
				}
			}
		}
	}
	// Only workers reach Ollama: it listens on the pod's loopback, and no
	// policy opens its port.
	for _, p := range r.pods() {
		for _, c := range containers(p.spec) {
			if !strings.HasPrefix(c.Image, "ollama/") {
				continue
			}
			if h := envValue(c, "OLLAMA_HOST"); !strings.HasPrefix(h, "127.0.0.1:") {
				t.Errorf("%s/%s: OLLAMA_HOST %q is not on the loopback", p.owner, c.Name, h)
			}
			if len(c.Ports) != 0 {
				t.Errorf("%s/%s declares ports; Ollama should be reached by the worker beside it only", p.owner, c.Name)
			}
		}
	}
	// NATS's client port admits herd's services (and agents with the label).
	var natsPolicy *networkingv1.NetworkPolicy
	for i := range r.policies {
		if r.policies[i].Name == "nats" {
			natsPolicy = &r.policies[i]
		}
	}
	if natsPolicy == nil {
		t.Fatal("no NetworkPolicy nats")
	}
	for _, name := range []string{"herd-dispatcher", "herd-worker", "herd-optimizer"} {
		d := r.deployment(name)
		if d == nil {
			t.Fatalf("no Deployment %s", name)
		}
		if !admits(t, natsPolicy, d.Spec.Template.Labels, "client") {
			t.Errorf("NetworkPolicy/nats does not let Deployment/%s reach the client port", name)
		}
	}
}

// admits reports whether an ingress rule of np lets pods with podLabels of
// the same namespace reach port.
func admits(t *testing.T, np *networkingv1.NetworkPolicy, podLabels map[string]string, port string) bool {
	for _, rule := range np.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			portOK = portOK || p.Port != nil && p.Port.String() == port
		}
		for _, peer := range rule.From {
			if portOK && peer.NamespaceSelector == nil && peer.PodSelector != nil &&
				selector(t, np.Name, peer.PodSelector).Matches(labels.Set(podLabels)) {
				return true
			}
		}
	}
	return false
}

func checkPodMonitors(t *testing.T, r *render) {
	monitored := map[string]bool{}
	for _, pm := range r.podMonitors {
		what := "PodMonitor/" + pm.Name
		if ns := pm.Spec.NamespaceSelector; ns != nil && (ns.Any || len(ns.MatchNames) > 0 && !slices.Contains(ns.MatchNames, namespace)) {
			t.Errorf("%s: namespaceSelector does not keep to %s", what, namespace)
		}
		pods := r.podsMatching(t, selector(t, what, &pm.Spec.Selector))
		if len(pods) == 0 {
			t.Errorf("%s: selector matches no pod", what)
		}
		if len(pm.Spec.PodMetricsEndpoints) == 0 {
			t.Errorf("%s: no podMetricsEndpoints", what)
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Path != "/metrics" {
				t.Errorf("%s: path %q, herd serves /metrics", what, ep.Path)
			}
			for _, p := range pods {
				if !hasPort(p, intstr.FromString(ep.Port)) {
					t.Errorf("%s: %s has no port named %q", what, p.owner, ep.Port)
				}
				monitored[p.owner] = true
			}
		}
	}
	for _, d := range r.deployments {
		if !monitored["Deployment/"+d.Name] {
			t.Errorf("Deployment/%s: no PodMonitor scrapes it", d.Name)
		}
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// natsServer is the NATS StatefulSet's server configuration as the server
// reads it, with its pod's environment.
type natsServer struct {
	sts  *appsv1.StatefulSet
	c    corev1.Container
	opts *server.Options
	// users maps each user of the configuration to its account.
	users map[string]string
}

// checkNATS loads the rendered nats.conf and auth.conf with nats-server's
// own parser, in the environment of pod nats-0 (its Secret included).
func checkNATS(t *testing.T, r *render) *natsServer {
	if len(r.statefulSets) != 1 || r.statefulSets[0].Name != "nats" {
		t.Fatalf("want one StatefulSet nats, got %d", len(r.statefulSets))
	}
	sts := &r.statefulSets[0]
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("StatefulSet/nats: want 3 replicas")
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("StatefulSet/nats: want podManagementPolicy Parallel (the cluster forms only with all servers up)")
	}
	c := sts.Spec.Template.Spec.Containers[0]
	var cm *corev1.ConfigMap
	var confDir string
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				cm, confDir = r.configMap(v.ConfigMap.Name), m.MountPath
			}
		}
	}
	if cm == nil {
		t.Fatal("StatefulSet/nats mounts no ConfigMap")
	}
	conf := ""
	for i, a := range c.Args {
		if (a == "--config" || a == "-c") && i+1 < len(c.Args) {
			conf = c.Args[i+1]
		}
	}
	if filepath.Dir(conf) != confDir {
		t.Fatalf("nats --config %q is not in the ConfigMap's mount %s", conf, confDir)
	}
	dir := t.TempDir()
	for k, v := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The pod's environment: its own variables and the Secret's.
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			t.Setenv(e.Name, sts.Name+"-0")
		case e.ValueFrom == nil:
			t.Setenv(e.Name, e.Value)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef == nil {
			continue
		}
		s := r.secret(ef.SecretRef.Name)
		if s == nil {
			t.Fatalf("no Secret %s", ef.SecretRef.Name)
		}
		for k, v := range s.Data {
			t.Setenv(ef.Prefix+k, string(v))
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, filepath.Base(conf)))
	if err != nil {
		t.Fatalf("nats-server does not accept the rendered configuration: %v", err)
	}
	if s := r.generatedSecret(t); !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
		return e.SecretRef != nil && e.SecretRef.Name == s.Name
	}) {
		t.Errorf("StatefulSet/nats does not take its passwords from the generated Secret %s", s.Name)
	}

	if !opts.JetStream || !opts.SyncAlways {
		t.Errorf("NATS: want JetStream with sync_interval: always (fsync every write), got jetstream %v sync always %v", opts.JetStream, opts.SyncAlways)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == opts.StoreDir && slices.ContainsFunc(sts.Spec.VolumeClaimTemplates,
			func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == m.Name })
	}) {
		t.Errorf("NATS store_dir %s is not a mounted volume claim", opts.StoreDir)
	}
	if opts.MaxPayload < 8<<20 {
		t.Errorf("NATS max_payload %d, herd needs 8 MB", opts.MaxPayload)
	}
	if opts.ServerName != sts.Name+"-0" {
		t.Errorf("NATS server_name %q, want the pod's name (KEDA finds a consumer's leader by it)", opts.ServerName)
	}
	if int32(opts.Port) != containerPort(t, c, "client") || int32(opts.HTTPPort) != containerPort(t, c, "monitor") ||
		int32(opts.Cluster.Port) != containerPort(t, c, "cluster") {
		t.Errorf("NATS ports (client %d, monitor %d, cluster %d) differ from the container's", opts.Port, opts.HTTPPort, opts.Cluster.Port)
	}
	if !opts.Cluster.NoAdvertise {
		t.Errorf("NATS cluster: want no_advertise (clients use the Service)")
	}
	var routes []string
	for _, u := range opts.Routes {
		routes = append(routes, u.Host)
	}
	var want []string
	for i := range *sts.Spec.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, opts.Cluster.Port))
	}
	if !slices.Equal(routes, want) {
		t.Errorf("NATS routes %v, want one per replica %v", routes, want)
	}
	// An overlay may replace auth.conf (to add agents); herd's services
	// must still be users of it (checkHerdConfig), and every password it
	// names must be set, or nats-server would have refused it above.
	users := map[string]string{}
	for _, u := range opts.Users {
		if u.Account != nil {
			users[u.Username] = u.Account.Name
		}
	}
	return &natsServer{sts: sts, c: c, opts: opts, users: users}
}

// herdFlags maps each service's flags to their configuration keys, as
// cmd/<service>/main.go does.
var herdFlags = map[string]map[string]string{
	"dispatcher": {"nats": "nats.url", "http": "http.listen"},
	"optimizer":  {"nats": "nats.url", "http": "http.listen"},
	"worker": {"nats": "nats.url", "http": "http.listen", "ollama": "ollama.url", "id": "worker.id",
		"slots": "worker.slots", "cpu-budget": "worker.cpu_budget", "data": "server.data"},
}

// checkHerdConfig loads herd's configuration as each herd container would
// (the mounted herd.yaml, its HERD_* variables, its flags) and checks it
// against the render. It returns the configurations by service.
func checkHerdConfig(t *testing.T, r *render, nats *natsServer) map[string]config.Config {
	cfgs := map[string]config.Config{}
	for _, d := range r.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			service := ""
			if len(c.Command) == 1 && strings.HasPrefix(c.Command[0], "/usr/local/bin/") {
				service = strings.TrimPrefix(c.Command[0], "/usr/local/bin/")
			}
			keys, ok := herdFlags[service]
			if !ok {
				continue
			}
			t.Run("config "+service, func(t *testing.T) {
				cfgs[service] = loadHerdConfig(t, r, d, c, keys, nats)
			})
		}
	}
	for _, s := range []string{"dispatcher", "worker", "optimizer"} {
		if _, ok := cfgs[s]; !ok {
			t.Errorf("no Deployment runs the %s", s)
		}
	}
	return cfgs
}

func loadHerdConfig(t *testing.T, r *render, d appsv1.Deployment, c corev1.Container, keys map[string]string, nats *natsServer) config.Config {
	owner := "Deployment/" + d.Name + "/" + c.Name
	flags := map[string]any{}
	path := ""
	for i := 0; i < len(c.Args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(c.Args[i], "-"), "=")
		if !hasValue && i+1 < len(c.Args) {
			value = c.Args[i+1]
			i++
		}
		if name == "config" {
			path = value
			continue
		}
		key, ok := keys[name]
		if !ok {
			t.Fatalf("%s: flag --%s is not one of the service's", owner, name)
		}
		flags[key] = value
	}
	// The mounted herd.yaml, from its ConfigMap.
	file := ""
	for _, m := range c.VolumeMounts {
		if m.MountPath != filepath.Dir(path) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if cm := r.configMap(v.ConfigMap.Name); cm != nil {
					data, ok := cm.Data[filepath.Base(path)]
					if !ok {
						t.Fatalf("%s: ConfigMap %s has no %s", owner, cm.Name, filepath.Base(path))
					}
					file = filepath.Join(t.TempDir(), "herd.yaml")
					if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if file == "" {
		t.Fatalf("%s: --config %q is not a file of a mounted ConfigMap", owner, path)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			t.Setenv(e.Name, e.Value)
		case e.ValueFrom.FieldRef != nil:
			t.Setenv(e.Name, "pod-name")
		case e.ValueFrom.SecretKeyRef != nil:
			s := r.secret(e.ValueFrom.SecretKeyRef.Name)
			if s == nil {
				t.Fatalf("%s: no Secret %s", owner, e.ValueFrom.SecretKeyRef.Name)
			}
			t.Setenv(e.Name, string(s.Data[e.ValueFrom.SecretKeyRef.Key]))
		}
	}
	cfg, err := config.Load(file, flags)
	if err != nil {
		t.Fatalf("%s: herd does not accept its configuration: %v", owner, err)
	}

	// It listens where the pod's port and probes are.
	_, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil || port != strconv.Itoa(int(containerPort(t, c, "http"))) {
		t.Errorf("%s: http.listen %q is not the container's port http", owner, cfg.HTTP.Listen)
	}
	// It reaches NATS through a Service of the NATS pods.
	for _, raw := range strings.Split(cfg.NATS.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			t.Errorf("%s: nats.url: %v", owner, err)
			continue
		}
		svc := r.service(strings.Split(u.Hostname(), ".")[0])
		if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
			return strconv.Itoa(int(p.Port)) == u.Port() && p.TargetPort.String() == "client"
		}) || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(nats.sts.Spec.Template.Labels)) {
			t.Errorf("%s: nats.url %s is not a Service port to the NATS client port", owner, raw)
		}
	}
	if cfg.NATS.Replicas != int(*nats.sts.Spec.Replicas) {
		t.Errorf("%s: nats.replicas %d, but NATS has %d servers", owner, cfg.NATS.Replicas, *nats.sts.Spec.Replicas)
	}
	// It logs in as a user of auth.conf with that user's password.
	if _, ok := nats.users[cfg.NATS.User]; !ok {
		t.Errorf("%s: nats.user %q is not a user of auth.conf", owner, cfg.NATS.User)
	}
	for _, e := range c.Env {
		if e.Name == "HERD_NATS__PASSWORD" {
			want := "NATS_PASSWORD_" + strings.ToUpper(cfg.NATS.User)
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != want {
				t.Errorf("%s: HERD_NATS__PASSWORD is not the Secret's %s", owner, want)
			}
		}
	}
	if cfg.NATS.Password == "" {
		t.Errorf("%s: no NATS password", owner)
	}
	if c.Command[0] == "/usr/local/bin/worker" {
		checkWorkerPod(t, owner, d.Spec.Template.Spec, cfg)
	}
	return cfg
}

// checkWorkerPod checks the worker against its Ollama sidecar: the URL, the
// slots, the CPU budget and the models it imports.
func checkWorkerPod(t *testing.T, owner string, spec corev1.PodSpec, cfg config.Config) {
	var sidecar *corev1.Container
	made := map[string]bool{}
	for i, c := range spec.InitContainers {
		if !strings.HasPrefix(c.Image, "ollama/ollama:") {
			continue
		}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecar = &spec.InitContainers[i]
			continue
		}
		if sidecar == nil {
			t.Errorf("%s: init container %s runs before the Ollama sidecar", owner, c.Name)
		}
		if len(c.Args) >= 2 && (c.Args[0] == "create" || c.Args[0] == "pull") {
			made[c.Args[1]] = true
		}
	}
	if sidecar == nil {
		t.Fatalf("%s: no Ollama sidecar (an init container with restartPolicy Always)", owner)
	}
	if want := "http://" + envValue(*sidecar, "OLLAMA_HOST"); cfg.Ollama.URL != want {
		t.Errorf("%s: ollama.url %q, the sidecar listens on %s", owner, cfg.Ollama.URL, want)
	}
	if n, _ := strconv.Atoi(envValue(*sidecar, "OLLAMA_NUM_PARALLEL")); n != cfg.Worker.Slots {
		t.Errorf("%s: worker.slots %d, the sidecar's OLLAMA_NUM_PARALLEL %d", owner, cfg.Worker.Slots, n)
	}
	limit := sidecar.Resources.Limits[corev1.ResourceCPU]
	budget := resource.MustParse(strconv.FormatFloat(cfg.Worker.CPUBudget, 'f', -1, 64))
	if limit.IsZero() || budget.Cmp(limit) > 0 {
		t.Errorf("%s: worker.cpu_budget %v is above the sidecar's CPU limit %s", owner, cfg.Worker.CPUBudget, limit.String())
	}
	if len(cfg.Worker.Models) == 0 {
		t.Errorf("%s: worker.models is empty; the autoscaler needs the models to name their consumers", owner)
	}
	for _, m := range cfg.Worker.Models {
		if !made[m] {
			t.Errorf("%s: worker.models has %s, which no init container creates or pulls", owner, m)
		}
	}
}

// streamNames returns the streams herd defines (streams/stream-*.json).
func streamNames(t *testing.T) []string {
	t.Helper()
	files, err := fs.Glob(streams.FS, "stream-*.json")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		b, err := fs.ReadFile(streams.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		var def struct {
			Config struct {
				Name string `json:"name"`
			} `json:"config"`
		}
		if err := json.Unmarshal(b, &def); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		names = append(names, def.Config.Name)
	}
	return names
}

var monitoringHost = regexp.MustCompile(`^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$`)

func checkScaledObject(t *testing.T, r *render, nats *natsServer, cfgs map[string]config.Config) {
	if len(r.scaledObjects) != 1 {
		t.Fatalf("want one ScaledObject, got %d", len(r.scaledObjects))
	}
	so := r.scaledObjects[0]
	ref := so.Spec.ScaleTargetRef
	d := r.deployment(ref.Name)
	if d == nil || ref.Kind != "" && ref.Kind != "Deployment" {
		t.Fatalf("ScaledObject/%s: scaleTargetRef %s/%s is not a Deployment of the render", so.Name, ref.Kind, ref.Name)
	}
	if !slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool {
		return len(c.Command) == 1 && c.Command[0] == "/usr/local/bin/worker"
	}) {
		t.Errorf("ScaledObject/%s scales %s, which runs no worker", so.Name, d.Name)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("Deployment/%s sets replicas; KEDA owns them (an apply would reset the scale)", d.Name)
	}

	// The bounds are the optimizer's: its instances recommendation stays
	// within optimizer.scale.
	scale := cfgs["optimizer"].Optimizer.Scale
	if so.Spec.MinReplicaCount == nil || int(*so.Spec.MinReplicaCount) != scale.MinInstances ||
		so.Spec.MaxReplicaCount == nil || int(*so.Spec.MaxReplicaCount) != scale.MaxInstances {
		t.Errorf("ScaledObject/%s: replicas %v..%v, the optimizer recommends %d..%d (optimizer.scale)",
			so.Name, ptrString(so.Spec.MinReplicaCount), ptrString(so.Spec.MaxReplicaCount), scale.MinInstances, scale.MaxInstances)
	}

	// One trigger per consumer a worker creates: per model and priority.
	want := map[string]bool{}
	for _, m := range cfgs["worker"].Worker.Models {
		for _, p := range wire.Priorities {
			want[wire.ConsumerName(m, p)] = true
		}
	}
	seen := map[string]bool{}
	stream := streamNames(t)
	workerAccount := nats.users[cfgs["worker"].NATS.User]
	for i, tr := range so.Spec.Triggers {
		what := fmt.Sprintf("ScaledObject/%s trigger %d (%s)", so.Name, i, tr.Name)
		if tr.Type != "nats-jetstream" {
			t.Errorf("%s: type %q, want nats-jetstream", what, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !slices.Contains(jetStreamTriggerKeys, k) {
				t.Errorf("%s: metadata %q is not one of the scaler's %v", what, k, jetStreamTriggerKeys)
			}
		}
		md := tr.Metadata
		if md["stream"] != wire.StreamBatch || !slices.Contains(stream, md["stream"]) {
			t.Errorf("%s: stream %q, want %s (streams/stream-%s.json)", what, md["stream"], wire.StreamBatch, wire.StreamBatch)
		}
		if !want[md["consumer"]] {
			t.Errorf("%s: consumer %q is not one a worker creates (wire.ConsumerName of worker.models %v and a priority)",
				what, md["consumer"], cfgs["worker"].Worker.Models)
		}
		seen[md["consumer"]] = true
		if md["account"] != workerAccount || workerAccount == "" {
			t.Errorf("%s: account %q, the worker's streams are in %q", what, md["account"], workerAccount)
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
			t.Errorf("%s: lagThreshold %q is not a positive integer", what, md["lagThreshold"])
		}
		// <headless service>.<namespace>.svc.cluster.local:<monitor port>,
		// so that <server_name>.<that> is a NATS pod.
		m := monitoringHost.FindStringSubmatch(md["natsServerMonitoringEndpoint"])
		if m == nil {
			t.Errorf("%s: natsServerMonitoringEndpoint %q is not <service>.<namespace>.svc.cluster.local:<port>", what, md["natsServerMonitoringEndpoint"])
			continue
		}
		if m[1] != nats.sts.Spec.ServiceName || m[2] != namespace {
			t.Errorf("%s: natsServerMonitoringEndpoint names %s.%s, want the headless Service %s.%s (KEDA asks <server_name>.<host> for a consumer's leader)",
				what, m[1], m[2], nats.sts.Spec.ServiceName, namespace)
		}
		if m[3] != strconv.Itoa(nats.opts.HTTPPort) {
			t.Errorf("%s: monitoring port %s, NATS serves it on %d", what, m[3], nats.opts.HTTPPort)
		}
		if md["useHttps"] == "true" {
			t.Errorf("%s: useHttps, but NATS's monitoring port is plain HTTP", what)
		}
	}
	for c := range want {
		if !seen[c] {
			t.Errorf("ScaledObject/%s: no trigger for consumer %s (worker.models %v)", so.Name, c, cfgs["worker"].Worker.Models)
		}
	}
	// KEDA reaches NATS's monitoring port.
	var natsPolicy *networkingv1.NetworkPolicy
	for i := range r.policies {
		if r.policies[i].Name == "nats" {
			natsPolicy = &r.policies[i]
		}
	}
	if natsPolicy == nil || !slices.ContainsFunc(natsPolicy.Spec.Ingress, func(rule networkingv1.NetworkPolicyIngressRule) bool {
		return slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == "monitor" }) &&
			slices.ContainsFunc(rule.From, func(p networkingv1.NetworkPolicyPeer) bool {
				return p.NamespaceSelector != nil && p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "keda"
			})
	}) {
		t.Errorf("NetworkPolicy/nats does not let KEDA (namespace keda) reach the monitoring port")
	}
}

func ptrString(p *int32) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(int(*p))
}
