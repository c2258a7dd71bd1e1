# lib.sh: what bench.sh, dovecot-tls.sh and sweep.sh set up alike,
# sourced by each (from the repository's root, after its say and die):
#
#   make_cert DIR    one throwaway ECDSA P-256 key and self-signed
#                    certificate for CN=localhost: DIR/key.pem,
#                    DIR/cert.pem and DIR/localhost.pem (key first, the
#                    form the signer and stunnel read), all mode 0600
#   start_signer JAIL RANGE PEM SOCK LOG [PATHDIR]
#                    the signer as the service's signer/run starts it
#                    (GOMAXPROCS=1 as env/GOMAXPROCS, setuidgid-chroot
#                    opens the key file and the socket while root);
#                    its messages appended to LOG, its binaries first
#                    from PATHDIR when given; waits until it is ready
#                    and leaves its pid in SIGNER (env and
#                    setuidgid-chroot exec: the signer itself)

make_cert() {
	mkdir -p "$1" || die "unable to make $1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1/key.pem" -out "$1/cert.pem" -days 30 -subj /CN=localhost \
		>/dev/null 2>&1 || die "unable to make a test certificate"
	cat "$1/key.pem" "$1/cert.pem" >"$1/localhost.pem"
	chmod 600 "$1/localhost.pem" "$1/key.pem"
}

start_signer() {
	mkdir -p "$(dirname "$4")"
	: >>"$5"
	env GOMAXPROCS=1 PATH="${6:+$6:}$PATH" setuidgid-chroot -/ "$1" -r "$2" -o 3:"$3" -l 4:"$4" \
		stunnel-imap-signer -P 3 -L 4 2>>"$5" &
	SIGNER=$!
	i=0
	until grep -q 'info: ready' "$5"; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$SIGNER" 2>/dev/null; then
			die "the signer did not start: $(tail -1 "$5")"
		fi
		sleep 0.1
	done
}
