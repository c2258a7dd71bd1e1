package main

import (
	"testing"
	"time"
)

// Bytes that flow put the idle timeout off (the timer's function resets
// it): a session busy for longer than -A is not cut, and the silence
// after it is.
func TestIdleTimeoutPutOffByTraffic(t *testing.T) {
	const idle = 600 * time.Millisecond
	h := start(t, setup{mode: modeImplicit, idle: idle})
	script := []step{handshake(), s(serverGreeting), C(serverGreeting), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
		s("a OK in\r\n"), C("a OK in\r\n")}
	// Twice the idle timeout of traffic, a command every sixth of it.
	start := time.Now()
	for i := 0; i < 12; i++ {
		script = append(script, pause(idle/6), c("b NOOP\r\n"), S("b NOOP\r\n"), s("b OK\r\n"), C("b OK\r\n"))
	}
	h.run(script)
	if busy := time.Since(start); busy < idle {
		t.Fatalf("the traffic lasted %s, less than the idle timeout %s: it proves nothing", busy, idle)
	}
	h.run([]step{clientEnds(), serverEnds()})
	h.ended("idle-timeout", "warning: session idle for 600ms")
}
