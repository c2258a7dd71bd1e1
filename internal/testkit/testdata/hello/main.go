// Command hello is testkit's own build target: it prints which build
// tags it was built with.
package main

import "fmt"

func main() { fmt.Println("hello" + tagged) }
