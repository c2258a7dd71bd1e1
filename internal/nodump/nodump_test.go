package nodump

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestSet(t *testing.T) {
	if err := Set(); err != nil {
		t.Fatal(err)
	}
	if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != 0 {
		t.Errorf("dumpable = %d (%v), want 0", d, err)
	}
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &r); err != nil || r.Cur != 0 || r.Max != 0 {
		t.Errorf("RLIMIT_CORE = %+v (%v), want 0/0", r, err)
	}
}
