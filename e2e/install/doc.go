// Package install tests Herald's install manifests (manifests/): that
// manifests/herald.yaml is the kustomize render, that a real API server
// accepts the render and admits its pods, and that each ServiceAccount's
// effective permissions are exactly those in manifests/rbac-expected.yaml.
package install
