package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/speaker/state"
)

// Reasons of the speaker's Events; the Announced condition's reasons are
// in package state (the controller writes the condition).
const (
	ReasonAnnouncedL2  = state.ReasonAnnouncedL2
	ReasonNotAnnounced = state.ReasonNotAnnounced
)

// reporter tells the cluster what this node does: an Event on a Service
// when this node starts or stops announcing it, and the node's SpeakerState,
// written in the background and only when it changes, so that announcing
// never waits for the API server (and goes on while it is away). Speakers
// write no Service: the controller turns the SpeakerStates into the
// Services' herald.dev/Announced condition.
type reporter struct {
	recorder record.EventRecorder
	node     string
	states   dynamic.ResourceInterface // nil: nothing is published
	log      *zap.Logger
	kick     chan struct{}

	mu      sync.Mutex
	want    *state.Status // nil before the first decision
	owner   *metav1.OwnerReference
	written *state.Status // what the API holds, as far as this process knows
}

func newReporter(recorder record.EventRecorder, states dynamic.ResourceInterface, node string, log *zap.Logger) *reporter {
	return &reporter{recorder: recorder, states: states, node: node, log: log, kick: make(chan struct{}, 1)}
}

// announced records that this node now answers for addr of services.
func (r *reporter) announced(services []string, addr netip.Addr, iface string) {
	msg := fmt.Sprintf("%s announced from node %s on %s via L2", addr, r.node, iface)
	for _, key := range services {
		r.event(key, corev1.EventTypeNormal, ReasonAnnouncedL2, msg)
	}
}

// announcedMore records, on the Node, that this node took n more
// addresses than it wrote Events for (a takeover of many).
func (r *reporter) announcedMore(n int) {
	r.recorder.Eventf(&corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: r.node}, corev1.EventTypeNormal, ReasonAnnouncedL2,
		"node %s took over %d more addresses via L2 (see its SpeakerState)", r.node, n)
}

// splitBrain records that two speakers answered for addr and which one
// stepped back ("" while the other has not yet).
func (r *reporter) splitBrain(services []string, addr netip.Addr, other, steppedBack, why string) {
	msg := fmt.Sprintf("nodes %s and %s both answered for %s (their views of the speakers differed); ", r.node, other, addr)
	if steppedBack != "" {
		msg += "node " + steppedBack + " stepped back"
	} else {
		msg += "node " + r.node + " keeps it: " + why
	}
	for _, key := range services {
		r.event(key, corev1.EventTypeWarning, state.ReasonSplitBrain, msg)
	}
}

// withdrawn records that nobody answers for addr any more, and why.
func (r *reporter) withdrawn(services []string, addr netip.Addr, why string) {
	msg := fmt.Sprintf("%s not announced: %s", addr, why)
	for _, key := range services {
		r.event(key, corev1.EventTypeWarning, ReasonNotAnnounced, msg)
	}
}

// event records an Event on the Service key.
func (r *reporter) event(key, typ, reason, msg string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	r.recorder.Event(&corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ns, Name: name}, typ, reason, msg)
}

// publish sets what the node's SpeakerState should say; it is written
// when it differs from what was written last. node, when known, owns the
// object, so that the garbage collector removes it with the Node.
func (r *reporter) publish(st state.Status, node *corev1.Node) {
	st.Normalize()
	r.mu.Lock()
	defer r.mu.Unlock()
	if node != nil && r.owner == nil {
		r.owner = &metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
	}
	if r.want != nil && reflect.DeepEqual(*r.want, st) {
		return
	}
	r.want = &st
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run writes the SpeakerState whenever it changes, retrying with backoff
// while the API server refuses or is away, until ctx ends.
func (r *reporter) run(ctx context.Context) {
	if r.states == nil {
		return
	}
	const first, most = 200 * time.Millisecond, 10 * time.Second
	backoff := first
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-retry.C:
		}
		if err := r.write(ctx); err != nil {
			r.log.Info("speaker state not written, will retry", zap.Duration("in", backoff), zap.Error(err))
			retry.Reset(backoff)
			backoff = min(2*backoff, most)
			continue
		}
		backoff = first
	}
}

// write applies the wanted state (server-side apply: one call whether the
// object exists or not, and a no-op on the server when nothing changed).
func (r *reporter) write(ctx context.Context) error {
	r.mu.Lock()
	want, owner := r.want, r.owner
	done := want == nil || (r.written != nil && reflect.DeepEqual(*r.written, *want))
	r.mu.Unlock()
	if done {
		return nil
	}
	obj := &state.SpeakerState{ObjectMeta: metav1.ObjectMeta{Name: r.node}, Status: *want}
	if owner != nil {
		obj.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	u, err := state.ToUnstructured(obj)
	if err != nil {
		return err
	}
	if _, err := r.states.Apply(ctx, r.node, u, metav1.ApplyOptions{FieldManager: "herald-speaker", Force: true}); err != nil {
		return fmt.Errorf("apply %s %s: %w", state.Kind, r.node, err)
	}
	r.mu.Lock()
	r.written = want
	r.mu.Unlock()
	return nil
}
