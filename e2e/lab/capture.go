package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Capture is a tcpdump writing what a namespace sends and receives to a
// pcap file (classic libpcap format).
type Capture struct {
	// Path is the pcap file; complete once Stop returned.
	Path string
	l    *Lab
	proc Proc
}

// StartCapture runs tcpdump on every interface of namespace ns with the
// capture filter (e.g. "tcp port 179"), writing to <lab dir>/<name>.pcap,
// and returns once tcpdump captures. Down ends it if Stop is never called.
func (l *Lab) StartCapture(ctx context.Context, ns, name, filter string) (*Capture, error) {
	c := &Capture{Path: filepath.Join(l.Dir, name+".pcap"), l: l}
	logName := "tcpdump-" + name
	var seen int64
	if fi, err := os.Stat(l.LogPath(logName)); err == nil {
		seen = fi.Size() // an earlier capture of that name wrote there
	}
	// -Z root: keep the rights to write into the lab's directory; -U: write
	// each packet out at once.
	p, err := l.start(logName, ns, nil, "tcpdump", "-i", "any", "-n", "-U", "-Z", "root", "-w", c.Path, filter)
	if err != nil {
		return nil, err
	}
	c.proc = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(l.LogPath(logName))
		if int64(len(b)) > seen && bytes.Contains(b[seen:], []byte("listening on")) {
			return c, nil
		}
		if !p.Alive() || time.Now().After(deadline) || ctx.Err() != nil {
			c.Stop()
			return nil, fmt.Errorf("tcpdump in %s did not start capturing: %s", ns, bytes.TrimSpace(b[min(int64(len(b)), seen):]))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends tcpdump (which writes out what it holds) and returns the pcap
// file's path.
func (c *Capture) Stop() string {
	c.proc.Stop(5 * time.Second)
	c.l.ForgetProcess(c.proc)
	return c.Path
}
