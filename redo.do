# redo.do: the whole build of imap-tls, in POSIX sh.
#
#   sh redo.do          build static binaries into bin/
#   sh redo.do test     install what the tests need, build, run every test
#   sh redo.do demo     install what the demo needs, build, run the demo
#   sh redo.do bench    install the peers, build, run the benchmarks
#   sh redo.do clean    remove bin/
#
# Under a real redo, `redo redo` runs the default target ($1 is then
# "redo"); redo passes the target as $1, so the same file serves both.
set -e
cd "$(dirname "$0")"

target=${1:-all}
case $target in redo|all|default) target=all ;; esac

PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
export PATH

# The programs of the suite, by folder; each becomes bin/NAME.
programs='makesock setuidgid-chroot stunnel-imap stunnel-imap-key:stunnel-imap-key stunnel-imap-signer:stunnel-imap-signer imap-tls-server imap-tls-conf proxy-server imap-tls-check'

# Debian packages, by what needs them. ucspi-tcp-ipv6 is Debian's
# tcpserver with IPv6 (it Provides and Conflicts with ucspi-tcp: the
# same programs and options; with address 0 it listens on both families
# and gives IPv4 clients as TCPREMOTEIP=a.b.c.d, PROTO=TCP).
test_packages='daemontools ucspi-tcp-ipv6 dovecot-imapd dovecot-pop3d socat isync curl openssl python3 stunnel4 tlswrapper fetchmail mpop haproxy fail2ban nftables'
demo_packages='daemontools ucspi-tcp-ipv6 dovecot-imapd dovecot-pop3d socat isync curl openssl python3'
bench_packages='daemontools ucspi-tcp-ipv6 openssl stunnel4 tlswrapper linux-perf'

# Accounts the tests and the demo run things as: the jailed proxy, the
# logger, the owner of the test Dovecot's mailboxes.
accounts='imaptls imaptlslog imaptlsmail'

say() { echo "redo.do: $*" >&2; }
die() { echo "redo.do: fatal: $*" >&2; exit 111; }

need_go() {
	command -v go >/dev/null 2>&1 || die "go is not installed: install Go 1.26 (https://go.dev/dl) into /usr/local/go"
}

# install_packages pkg...: install what is missing; without root, name
# exactly what is missing and stop.
install_packages() {
	missing=
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		say "missing Debian packages:$missing"
		say "run as root: apt-get install$missing"
		exit 100
	fi
	say "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "unable to run apt-get update"
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing >/dev/null || die "unable to install:$missing"
	# Dovecot's package may start the system Dovecot on 143/993; ours are
	# private instances on other ports, so the system one is left alone.
}

make_accounts() {
	[ "$(id -u)" = 0 ] || return 0
	for a in $accounts; do
		id "$a" >/dev/null 2>&1 && continue
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$a" ||
			die "unable to create account $a"
	done
}

build() {
	need_go
	go mod download || die "unable to download Go modules"
	mkdir -p bin
	for p in $programs; do
		dir=${p%%:*}
		name=${p#*:}
		CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "bin/$name.tmp" "./$dir" || die "unable to build $name"
		mv -f "bin/$name.tmp" "bin/$name"
	done
}

case $target in
all)
	build
	;;
test)
	install_packages $test_packages
	make_accounts
	# Courier for tests/courier_test.go: Debian's packages unpacked into a
	# cache (/var/cache/imap-tls-test/courier), never installed (they
	# conflict with dovecot-imapd and dovecot-pop3d); the tests fetch it
	# themselves too, this only says early when it cannot be had
	if [ "$(id -u)" = 0 ]; then
		sh tests/courier.sh fetch || die "unable to fetch Courier's packages for the tests"
	fi
	build
	need_go
	unformatted=$(gofmt -l .)
	[ -z "$unformatted" ] || { say "not gofmt'd: $unformatted"; exit 1; }
	go vet ./...
	IMAPTLS_BIN=$(pwd)/bin
	export IMAPTLS_BIN
	go test -count=1 -timeout 30m ./...
	;;
demo)
	install_packages $demo_packages
	make_accounts
	build
	exec sh tests/demo.sh
	;;
bench)
	install_packages $bench_packages
	make_accounts
	build
	exec sh tests/bench/bench.sh
	;;
clean)
	rm -rf bin
	;;
*)
	echo "redo.do: usage: sh redo.do [ all | test | demo | bench | clean ]" >&2
	exit 100
	;;
esac
