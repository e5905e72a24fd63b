package speaker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLinkEventsTellChanges subscribes inside a network namespace of its
// own and checks that adding a link and bringing it up are told, and that
// the channel closes when the context ends.
func TestLinkEventsTellChanges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes a network namespace")
	}
	ns := fmt.Sprintf("hspk-linkev-%d", os.Getpid())
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events <-chan struct{}
	inNetNS(t, ns, func() {
		var err error
		if events, err = linkEvents(ctx); err != nil {
			t.Fatal(err)
		}
	})
	quiet := func(what string) {
		select {
		case <-events:
			t.Fatalf("%s: an event before any change", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
	told := func(what string) {
		select {
		case _, ok := <-events:
			if !ok {
				t.Fatalf("%s: channel closed", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event in 5 s", what)
		}
		for len(events) > 0 { // one change may be several messages
			<-events
		}
	}
	quiet("at start")
	ip(t, "-n", ns, "link", "add", "hla", "type", "veth", "peer", "name", "hlb")
	told("veth added")
	time.Sleep(100 * time.Millisecond)
	for len(events) > 0 {
		<-events
	}
	quiet("after the veth settled")
	ip(t, "-n", ns, "link", "set", "hla", "up")
	told("link up")

	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel still open 5 s after the context ended")
		}
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// inNetNS runs fn on a thread that is in the named network namespace.
func inNetNS(t *testing.T, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err) // the thread stays locked and ends with the goroutine
	}
	runtime.UnlockOSThread()
}
