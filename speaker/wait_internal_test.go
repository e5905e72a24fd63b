package speaker

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldlb/herald/l2"
)

// A burst of API changes costs one decision per apiSettle; a change of
// members is decided at once, whatever came before it.
func TestWaitSpacesAPIChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Speaker{trigger: make(chan struct{}, 1), api: make(chan struct{}, 1), l2: quietLink{},
			members: NewMembers(MemberOptions{})}
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		decided := time.Now()
		returned := make(chan time.Duration, 1)
		wait := func() {
			go func() {
				s.wait(t.Context(), timer, decided)
				returned <- time.Since(decided)
			}()
		}

		wait()
		for range 5 { // a new Service: created, addressed, its endpoints...
			time.Sleep(10 * time.Millisecond)
			s.apiChanged()
		}
		if got := <-returned; got != apiSettle {
			t.Errorf("a burst of API changes: decided after %v, want %v", got, apiSettle)
		}

		decided = time.Now()
		time.Sleep(2 * apiSettle)
		wait()
		s.apiChanged()
		synctest.Wait()
		if got := <-returned; got != 2*apiSettle {
			t.Errorf("an API change long after the last decision: decided after %v, want at once (%v)", got, 2*apiSettle)
		}

		decided = time.Now()
		wait()
		s.apiChanged()
		time.Sleep(time.Millisecond)
		s.members.notify()
		synctest.Wait()
		if got := <-returned; got != time.Millisecond {
			t.Errorf("members changed during the settle: decided after %v, want at once", got)
		}
	})
}

// quietLink is an Announcer that sees no conflicts.
type quietLink struct{}

func (quietLink) Set(map[netip.Addr][]string)   {}
func (quietLink) SetQuiet(map[netip.Addr]bool)  {}
func (quietLink) Announce(netip.Addr)           {}
func (quietLink) Conflicts() <-chan l2.Conflict { return nil }
func (quietLink) Probe(context.Context, netip.Addr, []string, int, time.Duration) ([]l2.Conflict, error) {
	return nil, nil
}
