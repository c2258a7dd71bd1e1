package main

// The tool runs from init (main.go); in the test binary it must not. A
// variable's initializer runs before every init function.
var _ = func() bool { testBinary = true; return true }()
