package certfile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"imap-tls/log"
)

// The expiry policy, one for every path: a leaf that has expired, or is
// not valid yet, is refused (Parse, exit 100); a leaf that expires
// within the warning days is served, with a warning that names the date
// at start (stunnel-imap-key -c, which imap-tls-server runs) and once per
// connection (the proxy, for the certificate it served).
const (
	// WarnDays is the default warning period, in days.
	WarnDays = 14
	// WarnDaysEnv names the environment variable that sets it (a
	// service's env/CERT_WARN_DAYS); 0 turns the warning off.
	WarnDaysEnv = "CERT_WARN_DAYS"
	// maxWarnDays bounds it: ten years.
	maxWarnDays = 3650
)

// WarnDaysFrom reads the warning period from getenv (os.Getenv): the
// default when unset or empty, a *log.Error (100) when it is not a whole
// number of days from 0 to 3650.
func WarnDaysFrom(getenv func(string) string) (int, error) {
	v := strings.TrimSpace(getenv(WarnDaysEnv))
	if v == "" {
		return WarnDays, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxWarnDays || strings.TrimLeft(v, "0123456789") != "" {
		return 0, log.Config(nil, "%s %q is not a number of days from 0 to %d", WarnDaysEnv, log.Clip(v, 40), maxWarnDays)
	}
	return n, nil
}

// Expiring returns the warning for a leaf that expires within days of
// now ("certificate for mail.example.org expires on 2026-12-05, in 8
// days: renew it"), or "" when it does not (or days is 0). An expired
// leaf is Parse's to refuse; here it reads "expired on".
func Expiring(leaf *x509.Certificate, days int, now time.Time) string {
	if leaf == nil || days <= 0 || leaf.NotAfter.After(now.Add(time.Duration(days)*24*time.Hour)) {
		return ""
	}
	date := leaf.NotAfter.UTC().Format(time.DateOnly)
	if now.After(leaf.NotAfter) {
		return fmt.Sprintf("certificate for %s expired on %s", leafName(leaf), date)
	}
	return fmt.Sprintf("certificate for %s expires on %s, %s: renew it", leafName(leaf), date, left(leaf.NotAfter.Sub(now)))
}

// left says how long is left: "in 8 days", "in 1 day", "in less than a
// day".
func left(d time.Duration) string {
	switch n := int(d / (24 * time.Hour)); n {
	case 0:
		return "in less than a day"
	case 1:
		return "in 1 day"
	default:
		return "in " + strconv.Itoa(n) + " days"
	}
}

// leafName names a certificate by its first DNS name or IP address,
// else its subject's common name; bounded, since a certificate can hold
// anything.
func leafName(c *x509.Certificate) string {
	n := c.Subject.CommonName
	switch {
	case len(c.DNSNames) > 0:
		n = c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		n = c.IPAddresses[0].String()
	}
	if n == "" {
		n = "(no name)"
	}
	return log.Clip(n, 100)
}

// Finding is one line of a certificate report: Kind is "ok", "warning"
// or "error", Text says what, in the suite's words.
type Finding struct {
	Kind, Text string
}

func (f Finding) String() string { return f.Kind + ": " + f.Text }

// Check reads one PEM from r (as Read does, at most MaxPEM bytes) and
// reports on it for a person: what the file holds and in which order,
// each certificate's subject, names, issuer and days left, whether each
// signs the one before it, the key's type and whether it matches, and
// warnings (expiry within warnDays, a missing intermediate, a chain out
// of order, an expired intermediate). err is the verdict of the policy
// every path applies (Parse's *log.Error, 100), or a read error (111);
// when err is not nil the findings end with an "error" line saying it.
// The buffer is wiped.
func Check(r io.Reader, name string, warnDays int, now time.Time) (findings []Finding, err error) {
	size := 64 << 10
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = int(min(st.Size(), MaxPEM) + 1)
		}
	}
	data, rerr := readAll(r, size)
	defer clear(data)
	if rerr != nil {
		err = log.Temp(rerr, "read certificate %s", from(name))
		return []Finding{{"error", err.Error()}}, err
	}
	findings = describe(data, warnDays, now)
	if _, err = Parse(data, name); err != nil {
		findings = append(findings, Finding{"error", err.Error()})
	}
	return findings, err
}

// describe is the descriptive part of Check: it never refuses (Parse
// does), it says what is there.
func describe(data []byte, warnDays int, now time.Time) []Finding {
	var out []Finding
	add := func(kind, format string, args ...any) {
		out = append(out, Finding{kind, fmt.Sprintf(format, args...)})
	}
	if len(data) > MaxPEM {
		return out
	}
	var order []string // "certificate", "key", or another block type
	var ders [][]byte
	var keyDER []byte
	defer func() { clear(keyDER) }()
	encrypted := false
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			order = append(order, "certificate")
			ders = append(ders, b.Bytes)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			order = append(order, "key")
			if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
				encrypted = true
			} else if keyDER == nil {
				keyDER = append([]byte(nil), b.Bytes...)
			}
			clear(b.Bytes)
		default:
			order = append(order, log.Clip(b.Type, 40))
		}
	}
	if len(order) == 0 {
		return out
	}
	add("ok", "%s", blocksText(order))
	var certs []*x509.Certificate
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			add("error", "certificate %d does not parse: %s", i+1, log.Clip(log.Reason(err), 200))
			return out
		}
		certs = append(certs, c)
	}
	for i, c := range certs {
		role := "leaf"
		if i > 0 {
			role = "intermediate"
			if c.CheckSignatureFrom(c) == nil {
				role = "root"
			}
		}
		add("ok", "certificate %d (%s): subject %s%s; issuer %s; valid until %s (%s)",
			i+1, role, dn(c.Subject.String()), namesText(c), dn(c.Issuer.String()),
			c.NotAfter.UTC().Format(time.DateOnly), daysLeft(c.NotAfter, now))
	}
	if len(certs) > 0 {
		leaf := certs[0]
		if w := Expiring(leaf, warnDays, now); w != "" && !now.After(leaf.NotAfter) {
			add("warning", "%s (warned from %d days before: %s)", w, warnDays, WarnDaysEnv)
		}
		for i := 1; i < len(certs); i++ {
			if certs[i-1].CheckSignatureFrom(certs[i]) == nil {
				add("ok", "certificate %d signs certificate %d", i+1, i)
			} else {
				add("warning", "certificate %d does not sign certificate %d: the order is the leaf, then its issuer, then that one's issuer", i+1, i)
			}
			if now.After(certs[i].NotAfter) {
				add("warning", "certificate %d (%s) expired on %s: clients that check it refuse the chain", i+1, dn(certs[i].Subject.String()), certs[i].NotAfter.UTC().Format(time.DateOnly))
			}
		}
		switch {
		case len(certs) == 1 && leaf.CheckSignatureFrom(leaf) == nil:
			add("ok", "the leaf is self-signed: clients must trust it as it is")
		case len(certs) == 1:
			// Whether the issuer is an intermediate or a root the clients
			// trust is not in the file: say when appending applies.
			add("warning", "no intermediate certificate after the leaf: if its issuer (%s) is an intermediate, as with every public CA, append it (certbot: fullchain.pem, not cert.pem), or clients that do not already hold it refuse the chain; a leaf issued directly by a root the clients trust (a private CA) needs none", dn(leaf.Issuer.String()))
		}
		if keyDER != nil && !encrypted {
			if k, err := parseKey(keyDER); err == nil {
				add("ok", "private key: %s, not encrypted", keyText(k))
				for i, c := range certs {
					if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(k.Public()) {
						if i == 0 {
							add("ok", "the private key matches certificate 1")
						} else {
							add("error", "the private key matches certificate %d, not 1: put that one first (the leaf, then its issuers)", i+1)
						}
					}
				}
			}
		}
	}
	return out
}

// blocksText says what the file holds, in order: "2 certificates, then a
// private key".
func blocksText(order []string) string {
	var parts []string
	for i := 0; i < len(order); {
		j := i
		for j < len(order) && order[j] == order[i] {
			j++
		}
		n, what := j-i, order[i]
		switch {
		case what == "key" && n == 1:
			parts = append(parts, "a private key")
		case what == "key":
			parts = append(parts, strconv.Itoa(n)+" private keys")
		case what == "certificate" && n == 1:
			parts = append(parts, "1 certificate")
		case what == "certificate":
			parts = append(parts, strconv.Itoa(n)+" certificates")
		default:
			parts = append(parts, strconv.Itoa(n)+" "+what+" block(s)")
		}
		i = j
	}
	return "holds " + strings.Join(parts, ", then ")
}

// namesText lists a certificate's DNS names and IP addresses, bounded.
func namesText(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return ""
	}
	const most = 10
	s := strings.Join(names[:min(len(names), most)], ", ")
	if len(names) > most {
		s += fmt.Sprintf(" and %d more", len(names)-most)
	}
	return "; names " + log.Clip(s, 400)
}

func dn(s string) string {
	if s == "" {
		return "(empty)"
	}
	return log.Clip(s, 200)
}

// daysLeft: "67 days left", "expired 3 days ago".
func daysLeft(t, now time.Time) string {
	d := t.Sub(now)
	if d < 0 {
		return "expired " + strconv.Itoa(int(-d/(24*time.Hour))) + " days ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days left"
}

func keyText(k any) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return "RSA " + strconv.Itoa(k.N.BitLen()) + " bits"
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PrivateKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}
