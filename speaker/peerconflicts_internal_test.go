package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/config"
)

// eventLog keeps the Events recorded, each with its object's namespace/name.
type eventLog struct {
	record.EventRecorder // nil: only Event is called
	events               []string
}

func (l *eventLog) Event(obj runtime.Object, typ, reason, msg string) {
	m := obj.(metav1.Object)
	l.events = append(l.events, m.GetNamespace()+"/"+m.GetName()+" "+typ+" "+reason+": "+msg)
}

// TestPeerConflictEvents checks that each conflict is reported once while
// it lasts, on Herald's ConfigMap, and again if it comes back.
func TestPeerConflictEvents(t *testing.T) {
	gw := netip.MustParseAddr("198.51.100.1")
	ab := config.PeerConflict{Address: gw, Port: 179, Kept: "rack-a", Dropped: []string{"rack-b"}}
	abc := config.PeerConflict{Address: netip.MustParseAddr("2001:db8::1"), Port: 1179, Kept: "v6-c", Dropped: []string{"v6-a", "v6-b"}}
	const (
		abEvent  = "herald-system/herald Warning PeerConflict: node node3 is selected by peers rack-a and rack-b at 198.51.100.1:179; it peers with rack-a (first in the document)"
		abcEvent = "herald-system/herald Warning PeerConflict: node node3 is selected by peers v6-c, v6-a and v6-b at [2001:db8::1]:1179; it peers with v6-c (first in the document)"
	)
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := indexer.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: "herald"}}); err != nil {
		t.Fatal(err)
	}
	events := &eventLog{}
	core, logs := observer.New(zapcore.WarnLevel)
	s := &Speaker{
		opts:       Options{Node: "node3", Namespace: "herald-system", ConfigName: "herald"},
		configMaps: corelisters.NewConfigMapLister(indexer),
		recorder:   events,
		log:        zap.New(core),
	}
	// The steps run in order: each says what one decision reports.
	for _, step := range []struct {
		name      string
		conflicts []config.PeerConflict
		want      []string
	}{
		{"a new conflict", []config.PeerConflict{ab}, []string{abEvent}},
		{"the same again: nothing", []config.PeerConflict{ab}, nil},
		{"one more: only the new one", []config.PeerConflict{ab, abc}, []string{abcEvent}},
		{"resolved: nothing", nil, nil},
		{"back: again", []config.PeerConflict{ab}, []string{abEvent}},
	} {
		events.events = nil
		before := logs.Len()
		s.peerConflictEvents(step.conflicts)
		if diff := cmp.Diff(step.want, events.events); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", step.name, diff)
		}
		if got := logs.Len() - before; got != len(step.want) {
			t.Errorf("%s: %d log lines; want %d", step.name, got, len(step.want))
		}
	}
	fields := logs.All()[0].ContextMap()
	if fields["node"] != "node3" || fields["peer"] != "rack-a" {
		t.Errorf("log fields %v; want node node3, peer rack-a", fields)
	}
}
