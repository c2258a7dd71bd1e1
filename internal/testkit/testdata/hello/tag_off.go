//go:build !testkittag

package main

const tagged = ""
