package keyproto

// For the external tests (package keyproto_test): the frame header's
// length, each request type's maximum, the PSS flag.
const (
	HeaderLen = headerLen
	FlagPSS   = flagPSS
)

var MaxRequest = maxRequest
