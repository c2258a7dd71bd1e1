package memscan

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"sort"
	"strings"
	"testing"
)

// TestScanFindsOwnKey: a process that holds a key is seen to hold it.
func TestScanFindsOwnKey(t *testing.T) {
	r, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, priv := range []any{r, e} {
		s, err := Secrets(priv)
		if err != nil {
			t.Fatal(err)
		}
		found, n, err := Scan(os.Getpid(), Needles(s))
		if err != nil {
			t.Fatal(err)
		}
		held := Holds(found, s)
		sort.Strings(held)
		var want []string
		for k := range s {
			want = append(want, k)
		}
		sort.Strings(want)
		if strings.Join(held, ",") != strings.Join(want, ",") {
			t.Errorf("%T: found %v of %v in %d bytes", priv, held, want, n)
		}
	}
	if _, err := Secrets("not a key"); err == nil {
		t.Error("Secrets accepted a string")
	}
	if _, _, err := Scan(-1, nil); err == nil {
		t.Error("Scan of pid -1 succeeded")
	}
}
