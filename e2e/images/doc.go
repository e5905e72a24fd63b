// Package images tests Herald's release images as `make images` builds them
// (hack/tools/images): reproducible digests, both platforms in one index, the
// configs the manifests rely on, and a push to a registry.
package images
