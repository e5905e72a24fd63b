package serve_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldlb/herald/cmd/internal/serve"
)

func TestHandlerProbes(t *testing.T) {
	yes := func() bool { return true }
	no := func() bool { return false }
	tests := []struct {
		name           string
		ready, healthy func() bool
		want           map[string]int
	}{
		{"ready", yes, nil, map[string]int{"/readyz": 200, "/healthz": 200, "/metrics": 200}},
		{"alive, not ready (a standby without the API, a speaker waiting for its key)", no, yes,
			map[string]int{"/readyz": 503, "/healthz": 200, "/metrics": 200}},
		{"wedged", yes, no, map[string]int{"/readyz": 200, "/healthz": 503, "/metrics": 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := serve.Handler(prometheus.NewRegistry(), tt.ready, tt.healthy)
			got := map[string]int{}
			for path := range tt.want {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				got[path] = rec.Code
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status codes (-want +got):\n%s", diff)
			}
		})
	}
}
