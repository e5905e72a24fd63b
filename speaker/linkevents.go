package speaker

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// linkEvents tells, on the returned channel, that a link in this network
// namespace changed: the kernel's rtnetlink link group (RTMGRP_LINK) sends
// one message per change (carrier, up/down, a link added or removed). A
// speaker looks at its carrier when it changes instead of reading sysfs
// 20 times a second: on a busy node every wakeup costs CPU the speaker
// needs for its heartbeats. Several changes between two reads are told
// once. The channel is closed when ctx ends or the socket fails; the
// caller then polls.
func linkEvents(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rtnetlink link group: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink") // non-blocking: reads wait in Go's poller, Close ends them
	changed := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		defer close(changed)
		defer f.Close() // a second Close, at ctx's end, is harmless
		buf := make([]byte, 32<<10)
		for {
			// ENOBUFS: the kernel dropped messages; something changed.
			if _, err := f.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
				return
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	return changed, nil
}
