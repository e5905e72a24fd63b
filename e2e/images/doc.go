// Package images tests Herald's release images as `make images` builds them
// (hack/tools/images): reproducible digests, both platforms in one index, the
// configs the manifests rely on, a push to a registry, and the tool's own
// registry and pull as the lab runs them.
package images
