package check

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"imap-tls/internal/suite"
	"imap-tls/log"
)

func TestMemLimit(t *testing.T) {
	for _, ok := range []string{strconv.Itoa(MinMemLimit), "100000000", "2000000000"} {
		if err := MemLimit(ok); err != nil {
			t.Errorf("MemLimit(%s): %v", ok, err)
		}
	}
	for v, want := range map[string]string{
		"50":                               "50 is below what a Go program needs to start (80000000 bytes of data, softlimit -d): raise it",
		strconv.Itoa(MinMemLimit - 1):      "is below",
		"x":                                `"x" is not a number of bytes`,
		"-5":                               "is not a number of bytes",
		"99999999999999999999999999999999": "is not a number of bytes",
	} {
		if err := MemLimit(v); err == nil || !strings.Contains(err.Error(), want) || !isConfig(err) {
			t.Errorf("MemLimit(%s) = %v, want a configuration error with %q", v, err, want)
		}
	}
}

func TestGoMemLimit(t *testing.T) {
	if got := GoMemLimit("100000000"); got != "20000000" {
		t.Errorf("GoMemLimit(100000000) = %s, want 20000000", got)
	}
	if got := GoMemLimit(strconv.Itoa(MinMemLimit)); got != "4000000" {
		t.Errorf("GoMemLimit(MinMemLimit) = %s, want 4000000", got)
	}
}

func TestSignerLimit(t *testing.T) {
	if err := SignerLimit(suite.SignerMax); err != nil {
		t.Errorf("SignerLimit(%d): %v", suite.SignerMax, err)
	}
	if err := SignerLimit(suite.SignerMax + 1); err == nil || !strings.Contains(err.Error(), "above the signer's limit of 4096 proxies at once") || !isConfig(err) {
		t.Errorf("SignerLimit(%d) = %v", suite.SignerMax+1, err)
	}
}

// isConfig: err is a *log.Error of exit 100.
func isConfig(err error) bool {
	var e *log.Error
	return errors.As(err, &e) && e.Code == log.ExitUsage
}
