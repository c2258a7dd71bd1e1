//go:build linux && !amd64 && !arm64

package seccomp

// The filter is written for x86_64 and arm64 only: elsewhere the build
// fails here rather than installing a filter with the wrong numbers.
var _ = unsupportedArchitecture
