package main

import (
	"slices"
	"testing"

	"imap-tls/internal/suite"
)

// TestTLSEnv: IMAP_TLS=1 or POP3_TLS=1 exactly in the modes where the
// proxy guarantees TLS before login; a stale value from env/ never
// survives, in any mode.
func TestTLSEnv(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{"imap", []string{"IMAP_TLS=1"}},
		{"imaps", []string{"IMAP_TLS=1"}},
		{"pop3", []string{"POP3_TLS=1"}},
		{"pop3s", []string{"POP3_TLS=1"}},
		{"imap-", nil},
		{"pop3-", nil},
	} {
		m, _ := suite.ModeNamed(tc.mode)
		o := &options{mode: m, concurrency: "40", jail: "./jail", pems: []string{"./ssl/stunnel.pem"},
			ids: []string{"-u", "imaptls"}, ip: "0", port: "143", imapd: []string{"imapd", "-n", "imaps"}}
		env := []string{"PATH=/bin", "IMAP_TLS=1", "POP3_TLS=1", "IMAP_TLSX=keep", "HOME=/"}
		got := tlsEnv(o.chain(), env)
		var tlsVars []string
		for _, kv := range got {
			if kv == "IMAP_TLS=1" || kv == "POP3_TLS=1" || len(kv) > 8 && (kv[:9] == "IMAP_TLS=" || kv[:9] == "POP3_TLS=") {
				tlsVars = append(tlsVars, kv)
			}
		}
		if !slices.Equal(tlsVars, tc.want) {
			t.Errorf("mode %s: %v, want %v (env %v)", tc.mode, tlsVars, tc.want, got)
		}
		for _, keep := range []string{"PATH=/bin", "IMAP_TLSX=keep", "HOME=/"} {
			if !slices.Contains(got, keep) {
				t.Errorf("mode %s: %s lost: %v", tc.mode, keep, got)
			}
		}
	}
}
