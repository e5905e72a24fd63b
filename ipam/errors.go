package ipam

import "errors"

// Sentinel errors the controller branches on. They are always returned
// wrapped with the detail (which address, which pool, who holds it), so
// compare with errors.Is.
var (
	// ErrPoolExhausted: every pool that may serve the request is full for
	// the family asked for.
	ErrPoolExhausted = errors.New("pool exhausted")
	// ErrNoMatchingPool: no pool may serve the request: the requested pool
	// does not exist or does not serve the Service, the requested address
	// lies in such a pool, or no automatic pool matches.
	ErrNoMatchingPool = errors.New("no matching pool")
	// ErrAddressInUse: the address is held by another owner and the two may
	// not share it, or it is still being released by another owner.
	ErrAddressInUse = errors.New("address in use")
	// ErrAddressNotInPool: the address is in no pool, is not in the
	// requested pool, or is a .0/.255 address its pool avoids.
	ErrAddressNotInPool = errors.New("address not in pool")
	// ErrFamilyUnavailable: pools may serve the request, but none has
	// addresses of the family asked for.
	ErrFamilyUnavailable = errors.New("address family unavailable")
	// ErrInvalidRequest: the request contradicts itself (bad families,
	// two addresses of one family, an address of a family not asked for...).
	ErrInvalidRequest = errors.New("invalid request")
)
