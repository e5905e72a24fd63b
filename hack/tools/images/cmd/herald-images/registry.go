package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// serveRegistry serves an in-memory registry over plain HTTP on addr until
// ctx ends, then shuts it down; what was pushed is gone with the process.
// Once it listens it prints "listening on HOST:PORT" to stdout, with the
// real port when addr asked for port 0, so a parent process knows where to
// push. Request logs go to stderr when verbose, else nowhere.
func serveRegistry(ctx context.Context, addr string, verbose bool) error {
	logs := log.New(io.Discard, "", 0)
	if verbose {
		logs = log.New(os.Stderr, "registry: ", log.LstdFlags)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	srv := &http.Server{
		Handler:           registry.New(registry.Logger(logs)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logs,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Stdout is unbuffered: the line is in the pipe when Println returns.
	fmt.Println("listening on", ln.Addr())

	select {
	case err := <-served:
		return fmt.Errorf("registry: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("registry: shut down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}
