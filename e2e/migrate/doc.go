// Package migrate tests the move from MetalLB to Herald in a full lab, as
// an operator makes it: Services that MetalLB gave addresses (its
// annotations on them, its addresses in their status) and MetalLB's
// configuration as custom resources; `kubectl herald migrate metallb
// --from-cluster` turns that configuration into Herald's, Herald is
// installed from manifests/ with it, and no Service's address changes while
// the client's GETs keep being answered. The package holds only tests.
package migrate
