// Package version holds what a Herald binary was built from, stamped at
// build time with -ldflags "-X github.com/heraldlb/herald/cmd/internal/version.Version=… -X ….Commit=…"
// (the Makefile takes both from git).
package version

import (
	"fmt"
	"runtime/debug"
)

// Stamped at build time; the defaults say the binary was built without the Makefile.
var (
	Version = "dev"
	Commit  = ""
)

// String is what --version prints: version, commit and Go version.
func String(binary string) string {
	commit := Commit
	if commit == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					commit = s.Value
				}
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	goVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
	}
	return fmt.Sprintf("%s %s (commit %s, %s)", binary, Version, commit, goVersion)
}
