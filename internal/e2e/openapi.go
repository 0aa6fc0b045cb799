package e2e

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIMatchesRoutes checks docs/openapi.yaml (as the server serves
// it) against the routes the server really has, both ways, so that the
// document cannot drift.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	n := startTestNode(t, testConfig())
	r := n.request("GET", "/api/openapi.yaml", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/openapi.yaml: %d", r.Status)
	}
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
			if _, ok := op["responses"]; !ok {
				t.Errorf("%s %s: no responses", method, path)
			}
		}
	}
	param := regexp.MustCompile(`:(\w+)`)
	served := map[string]bool{}
	for _, rt := range n.api.Routes() {
		method, path := rt[0], rt[1]
		// Pages, and the catch-alls Echo adds for group middleware.
		if strings.HasSuffix(path, "*") || path == "/api" || method == "echo_route_any" {
			continue
		}
		served[method+" "+param.ReplaceAllString(path, "{$1}")] = true
	}
	var missing, stale []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 || len(stale) > 0 {
		t.Fatalf("openapi.yaml drifted from the routes:\n  served, not documented: %v\n  documented, not served: %v", missing, stale)
	}
	if !slices.Contains(keys(served), "POST /api/publish") {
		t.Fatal("route listing is empty or wrong")
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
