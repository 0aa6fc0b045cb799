// Package charttest renders the Helm chart in deploy/helm/herald with
// Helm's own Go packages and checks every manifest: decoded strictly into
// the Kubernetes API types (an unknown or misspelt field, or a value of
// the wrong type, fails), then checked for what running Herald needs. It
// is a module of its own so that the herald module does not carry Helm's
// and Kubernetes' dependency trees; .ci/run runs it.
package charttest

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const chartDir = "../herald"

// Herald's defaults that the chart must fit (cmd/herald/config.go).
const heraldPort = 8080

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return c
}

// render renders the chart as `helm template` would, with vals over
// values.yaml (vals as YAML, like a -f file).
func render(t *testing.T, vals string) (map[string]string, error) {
	t.Helper()
	c := loadChart(t)
	user, err := chartutil.ReadValues([]byte(vals))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	rv, err := chartutil.ToRenderValues(c, user.AsMap(), chartutil.ReleaseOptions{Name: "push", Namespace: "live", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, rv)
}

// manifests are the rendered objects by kind; each is decoded strictly
// into its API type.
type manifests struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	configMap  *corev1.ConfigMap
	secrets    []*corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
}

func decode(t *testing.T, out map[string]string) manifests {
	t.Helper()
	var m manifests
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt, _helpers.tpl
		}
		for _, doc := range releaseutil.SplitManifests(out[name]) {
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				m.deployment = &appsv1.Deployment{}
				obj = m.deployment
			case "v1 Service":
				m.service = &corev1.Service{}
				obj = m.service
			case "v1 ConfigMap":
				m.configMap = &corev1.ConfigMap{}
				obj = m.configMap
			case "v1 Secret":
				s := &corev1.Secret{}
				m.secrets = append(m.secrets, s)
				obj = s
			case "policy/v1 PodDisruptionBudget":
				m.pdb = &policyv1.PodDisruptionBudget{}
				obj = m.pdb
			case "autoscaling/v2 HorizontalPodAutoscaler":
				m.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
				obj = m.hpa
			default:
				t.Fatalf("%s: unexpected %s %s", name, head.APIVersion, head.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: not a valid %s: %v\n%s", name, head.Kind, err, doc)
			}
		}
	}
	return m
}

const withSecrets = `
apiKey: {value: s3cret}
redis: {url: "redis://redis:6379/0"}
`

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func TestChartDefaults(t *testing.T) {
	out, err := render(t, withSecrets)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	m := decode(t, out)
	if m.deployment == nil || m.service == nil || m.configMap == nil || len(m.secrets) != 1 || m.pdb == nil {
		t.Fatalf("want a Deployment, Service, ConfigMap, Secret and PodDisruptionBudget; got %+v", m)
	}
	if m.hpa != nil {
		t.Error("an HPA although autoscaling.enabled is false")
	}

	d := m.deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	sel := d.Spec.Selector.MatchLabels
	for k, v := range sel {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("pod template lacks the selector's label %s=%s", k, v)
		}
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "ghcr.io/heraldpush/herald:0.1.0" {
		t.Errorf("image %q, want the chart's appVersion tag", c.Image)
	}

	// Probes: readiness on /readyz, liveness on /healthz, on the port
	// Herald listens on.
	var port corev1.ContainerPort
	for _, p := range c.Ports {
		if p.Name == "http" {
			port = p
		}
	}
	if port.ContainerPort != heraldPort {
		t.Errorf("container port http = %d, want %d", port.ContainerPort, heraldPort)
	}
	if e := envOf(c)["HERALD_LISTEN"]; e.Value != ":8080" {
		t.Errorf("HERALD_LISTEN %q, want :8080 (the container port)", e.Value)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: none", name)
			return
		}
		if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s probe: GET %s on %v, want %s on port http", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")

	// Drain: the grace period outlasts shutdown_timeout, which holds the
	// drain delay during which /readyz fails and connections stay.
	env := envOf(c)
	secs := func(v string) int64 {
		t.Helper()
		n, err := strconv.ParseInt(strings.TrimSuffix(v, "s"), 10, 64)
		if err != nil || !strings.HasSuffix(v, "s") {
			t.Fatalf("duration %q: want whole seconds (%v)", v, err)
		}
		return n
	}
	drain, shutdown := secs(env["HERALD_DRAIN_DELAY"].Value), secs(env["HERALD_SHUTDOWN_TIMEOUT"].Value)
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= shutdown || drain <= 0 || drain >= shutdown {
		t.Errorf("drain %ds, shutdown_timeout %ds, terminationGracePeriodSeconds %v: want 0 < drain < shutdown < grace", drain, shutdown, pod.TerminationGracePeriodSeconds)
	}
	if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling update may take a node down before its replacement is ready")
	}

	// Secrets: the API key and the Redis URL come from a Secret.
	sec := m.secrets[0]
	for name, key := range map[string]string{"HERALD_API_KEY": "api-key", "HERALD_REDIS_URL": "redis-url"} {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != sec.Name || e.ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("%s: %+v, want from Secret %s key %s", name, e, sec.Name, key)
		}
		if e.Value != "" {
			t.Errorf("%s is in the pod spec in clear", name)
		}
	}
	if string(sec.Data["api-key"]) != "s3cret" || string(sec.Data["redis-url"]) != "redis://redis:6379/0" {
		t.Errorf("Secret data %q", sec.Data)
	}
	if e := env["HERALD_NODE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("HERALD_NODE %+v, want the pod name: every node needs its own", e)
	}

	// Config: from the ConfigMap, mounted where HERALD_CONFIG points.
	if env["HERALD_CONFIG"].Value != "/etc/herald/herald.yaml" {
		t.Errorf("HERALD_CONFIG %q", env["HERALD_CONFIG"].Value)
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == m.configMap.Name && vm.MountPath == "/etc/herald" && vm.ReadOnly {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("ConfigMap %s is not mounted read-only at /etc/herald", m.configMap.Name)
	}
	if _, ok := m.configMap.Data["herald.yaml"]; !ok {
		t.Error("ConfigMap has no herald.yaml")
	}
	if d.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a config change would not roll the nodes")
	}

	// Resources: requests sized (docs/performance.md), a memory limit.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	if c.Resources.Limits.Memory().Cmp(*c.Resources.Requests.Memory()) < 0 {
		t.Error("memory limit below the request")
	}

	// Non-root, read-only, nothing extra.
	ps, cs := pod.SecurityContext, c.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", ps)
	}
	if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
		cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
		cs.Capabilities == nil || !slices.Contains(cs.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, capabilities dropped", cs)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; Herald does not use the API")
	}

	// Service and PDB select the pods.
	if !reflect.DeepEqual(m.service.Spec.Selector, sel) || !reflect.DeepEqual(m.pdb.Spec.Selector.MatchLabels, sel) {
		t.Errorf("selectors differ: deployment %v, service %v, pdb %v", sel, m.service.Spec.Selector, m.pdb.Spec.Selector.MatchLabels)
	}
	if len(m.service.Spec.Ports) != 1 || m.service.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("service ports %+v, want one to the http port", m.service.Spec.Ports)
	}
	if m.service.Spec.SessionAffinity != "" && m.service.Spec.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("session affinity %q: the nodes are stateless", m.service.Spec.SessionAffinity)
	}
	if m.pdb.Spec.MaxUnavailable == nil || m.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB maxUnavailable %v, want 1", m.pdb.Spec.MaxUnavailable)
	}
}

// The chart's channel rules are deploy/herald.yaml's, which
// deploy/compose_test.go checks against the pages and README.
func TestChartConfigMatchesCompose(t *testing.T) {
	out, err := render(t, withSecrets)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	var fromChart, fromCompose any
	if err := yaml.Unmarshal([]byte(m.configMap.Data["herald.yaml"]), &fromChart); err != nil {
		t.Fatalf("ConfigMap herald.yaml: %v", err)
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "herald.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(src, &fromCompose); err != nil {
		t.Fatalf("deploy/herald.yaml: %v", err)
	}
	if !reflect.DeepEqual(fromChart, fromCompose) {
		t.Errorf("values.yaml config differs from deploy/herald.yaml:\nchart:   %v\ncompose: %v", fromChart, fromCompose)
	}
}

func TestChartAutoscaling(t *testing.T) {
	out, err := render(t, withSecrets+"autoscaling: {enabled: true, minReplicas: 2, maxReplicas: 6}\n")
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if m.hpa == nil {
		t.Fatal("no HorizontalPodAutoscaler")
	}
	if m.deployment.Spec.Replicas != nil {
		t.Error("Deployment sets replicas although the HPA owns them")
	}
	ref := m.hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != m.deployment.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want the Deployment %s", ref, m.deployment.Name)
	}
	if m.hpa.Spec.MinReplicas == nil || *m.hpa.Spec.MinReplicas != 2 || m.hpa.Spec.MaxReplicas != 6 {
		t.Errorf("HPA replicas %v-%d", m.hpa.Spec.MinReplicas, m.hpa.Spec.MaxReplicas)
	}
}

func TestChartExistingSecrets(t *testing.T) {
	out, err := render(t, `
apiKey: {existingSecret: herald-keys, existingSecretKey: publisher}
redis: {existingSecret: redis-auth}
`)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.secrets) != 0 {
		t.Errorf("the chart made %d Secret(s) although both are existing ones", len(m.secrets))
	}
	env := envOf(m.deployment.Spec.Template.Spec.Containers[0])
	if r := env["HERALD_API_KEY"].ValueFrom.SecretKeyRef; r.Name != "herald-keys" || r.Key != "publisher" {
		t.Errorf("HERALD_API_KEY from %s/%s", r.Name, r.Key)
	}
	if r := env["HERALD_REDIS_URL"].ValueFrom.SecretKeyRef; r.Name != "redis-auth" || r.Key != "redis-url" {
		t.Errorf("HERALD_REDIS_URL from %s/%s", r.Name, r.Key)
	}
}

// Values that cannot work are refused at render time, with a reason.
func TestChartRefuses(t *testing.T) {
	for _, tc := range []struct{ vals, want string }{
		{`redis: {url: "redis://r:6379"}`, "apiKey"},
		{`apiKey: {value: k}`, "redis.url"},
		{`{apiKey: {value: k}, autoscaling: {enabled: true}, replicaCount: 1}`, "redis.url"},
		{withSecrets + "terminationGracePeriodSeconds: 15\n", "terminationGracePeriodSeconds"},
		{withSecrets + "drainDelaySeconds: 20\n", "drainDelaySeconds"},
	} {
		if _, err := render(t, tc.vals); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %q: err %v, want one naming %s", tc.vals, err, tc.want)
		}
	}
	// One node without Redis is fine (the memory broker).
	out, err := render(t, "apiKey: {value: k}\nreplicaCount: 1\n")
	if err != nil {
		t.Fatalf("one node, no Redis: %v", err)
	}
	if _, ok := envOf(decode(t, out).deployment.Spec.Template.Spec.Containers[0])["HERALD_REDIS_URL"]; ok {
		t.Error("HERALD_REDIS_URL set without redis values")
	}
}

// helm lint, with the values a user must give.
func TestChartLint(t *testing.T) {
	vals, err := chartutil.ReadValues([]byte(withSecrets))
	if err != nil {
		t.Fatal(err)
	}
	l := lint.All(chartDir, vals.AsMap(), "live", false)
	for _, msg := range l.Messages {
		t.Log(msg)
	}
	if l.HighestSeverity >= support.WarningSev {
		t.Errorf("helm lint: severity %d", l.HighestSeverity)
	}
}
