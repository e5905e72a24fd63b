// Command labpod is the lab's stand-in for a container: an HTTP server on the
// pod's addresses that answers with its pod and node name and the address the
// request came from (so tests can see whether the client's source survived).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
)

type listens []string

func (l *listens) String() string     { return strings.Join(*l, ",") }
func (l *listens) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var addrs listens
	name := flag.String("name", "", "pod namespace/name")
	node := flag.String("node", "", "node name")
	flag.Var(&addrs, "listen", "address:port to serve on (repeatable)")
	flag.Parse()

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod=%s node=%s client=%s\n", *name, *node, r.RemoteAddr)
	})
	errc := make(chan error, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatalf("listen %s: %v", a, err)
		}
		go func() { errc <- http.Serve(ln, handler) }()
	}
	log.Fatal(<-errc)
}
