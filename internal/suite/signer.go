package suite

// SignerMax is how many proxies the signer (stunnel-imap-signer) serves
// at once, its -c default: one goroutine and one descriptor each, a few
// kB. Beyond it a proxy is refused and its connection fails. A front's
// env/CONCURRENCY (tcpserver -c) above it is refused by imap-tls-check.
const SignerMax = 4096
