package bgp_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/e2e/lab"
)

// An edit that removes the peer and the BGP advertisement while a Service
// holds an address of the pool is held: the sessions stay up and the route
// stays at the router, reachable, until the user confirms the edit; then it
// is withdrawn.
func TestConfigChangeHeldKeepsRoutes(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}}, true)
	vip := "198.19.0.12"
	app(t, l, "heldbgp", "web", vip, false, map[string]string{"a": "node1"})
	all := l.NodeAddrs(false)
	l.ExpectRoute(t, vip, all, 30*time.Second)

	if err := l.ApplyHeraldConfig(ctx, poolsYAML); err != nil { // no peer, no advertisement
		t.Fatal(err)
	}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		got, err := l.BGPNextHops(ctx, lab.HostPrefix(vip))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(all) {
			t.Fatalf("while the edit is held, the router's next hops for %s are %v, want %v", vip, got, all)
		}
	}
	getFromExternal(t, l, vip, 5*time.Second)

	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, config.ConfirmAnnotation, config.Hash(poolsYAML))
	if _, err := l.Kube().CoreV1().ConfigMaps(lab.HeraldNamespace).Patch(ctx, "herald", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	l.ExpectRoute(t, vip, nil, 15*time.Second)
}
