# redo.do: the whole build of imap-tls, in POSIX sh.
#
#   sh redo.do          build static binaries into bin/
#   sh redo.do test     install what the tests need, build, run every test
#   sh redo.do demo     install what the demo needs, build, run the demo
#   sh redo.do bench    install the peers, build, run the benchmarks
#   sh redo.do clean    remove bin/
#   sh redo.do install  build, then install programs, man pages and service
#                       files into $DESTDIR$PREFIX (PREFIX: /usr/local)
#   sh redo.do uninstall  remove what install put there (its MANIFEST)
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
test_packages='daemontools daemontools-run ucspi-tcp-ipv6 ca-certificates dovecot-imapd dovecot-pop3d socat isync curl openssl python3 stunnel4 tlswrapper fetchmail mpop haproxy fail2ban nftables man-db groff-base'
demo_packages='daemontools ucspi-tcp-ipv6 dovecot-imapd dovecot-pop3d socat isync curl openssl python3 nftables'
bench_packages='daemontools ucspi-tcp-ipv6 openssl stunnel4 tlswrapper linux-perf dovecot-imapd socat nftables'

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
fuzz)
	# Every fuzz target of the module, one at a time, for FUZZTIME each
	# (default 60s; go test's -fuzztime: 10m, 30s, 100000x): campaigns
	# longer than the seeds `go test` runs. A failure leaves its input in
	# the package's testdata/fuzz/FuzzX/ (commit it: a regression seed);
	# the other targets still run, and the exit status is 1.
	need_go
	fuzztime=${FUZZTIME:-60s}
	failed=
	for pkg in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
		# (the packages found by their source first: go test -list over
		# ./... would build every package's tests and run their TestMain)
		targets=$(go test -list '^Fuzz' "$pkg") || { failed="$failed $pkg:(does-not-build)"; continue; }
		for f in $(echo "$targets" | grep '^Fuzz'); do
			say "fuzzing $f in $pkg for $fuzztime"
			go test -run='^$' -fuzz="^$f\$" -fuzztime="$fuzztime" "$pkg" || failed="$failed $pkg:$f"
		done
	done
	[ -z "$failed" ] || { say "fuzzing found failures in:$failed (inputs in testdata/fuzz/)"; exit 1; }
	;;
install | uninstall)
	# PREFIX (default /usr/local) and DESTDIR from the environment, as
	# make's install targets take them: PREFIX is where the files are
	# used, DESTDIR a staging root in front of it (a package, a test).
	#
	#   PREFIX/bin/NAME                    every program ($programs)
	#   PREFIX/share/man/man1/NAME.1       the tools' pages ($man1)
	#   PREFIX/share/man/man8/NAME.8       the others': daemons, the chain
	#   PREFIX/lib/imap-tls/               programs of ours run by others
	#                                      ($hooks: certbot's deploy hook)
	#   PREFIX/share/imap-tls/             the rest of service/: run files,
	#                                      env/ defaults, fail2ban, nftables
	#   PREFIX/share/imap-tls/MANIFEST     what install put there, for
	#                                      uninstall (and for the next
	#                                      install: what it no longer ships
	#                                      is removed)
	#
	# The man pages are made from each program's README.md page by
	# internal/mdman. A file that is already there, the same bytes and
	# mode, is left alone (its mtime too); any other is written beside
	# its place and renamed over it, so that a running program keeps its
	# old inode and a reader never sees half a file. With IMAPTLS_BIN
	# set, the programs are taken from there, built already (the tests).
	man1='imap-tls-conf imap-tls-check'
	hooks='certbot-deploy-hook'
	prefix=${PREFIX:-/usr/local}
	case $prefix in
	/*) ;;
	*) echo "redo.do: fatal: PREFIX must be an absolute path, not $prefix" >&2; exit 100 ;;
	esac
	root=$DESTDIR$prefix
	manifest=share/imap-tls/MANIFEST
	umask 022

	# check_rel path: a MANIFEST line is a path below PREFIX, nothing else
	check_rel() {
		case /$1/ in
		*/../* | */./* | //*) echo "redo.do: fatal: $root/$manifest: refused line: $1" >&2; exit 100 ;;
		esac
		case $1 in
		*[!A-Za-z0-9._+/-]* | '') echo "redo.do: fatal: $root/$manifest: refused line: $1" >&2; exit 100 ;;
		esac
	}

	if [ "$target" = uninstall ]; then
		if [ ! -f "$root/$manifest" ]; then
			say "nothing to uninstall: no $root/$manifest"
			exit 0
		fi
		# every line checked before any file is removed
		while IFS= read -r rel; do check_rel "$rel"; done <"$root/$manifest"
		n=0
		while IFS= read -r rel; do
			if [ -e "$root/$rel" ] || [ -h "$root/$rel" ]; then
				rm -f "$root/$rel" || die "unable to remove $root/$rel"
				n=$((n + 1))
			fi
			d=${rel%/*}
			rm -f "$root/$d/.${rel##*/}.imap-tls-new"
		done <"$root/$manifest"
		rm -f "$root/$manifest" || die "unable to remove $root/$manifest"
		# our own directories, when nothing else is left in them; bin/
		# and share/man/ are everyone's
		for d in share/imap-tls lib/imap-tls; do
			[ -d "$root/$d" ] && find "$root/$d" -depth -type d -empty -exec rmdir {} \;
		done
		say "removed $n files and $manifest from $root"
		say "left alone: site directories made by imap-tls-conf (such as /etc/imap-tls), their links in /etc/service and what you copied from share/imap-tls (the Dovecot drop-in, fail2ban's filter and jail); a service still running from $prefix/bin fails at its next exec: svc -d it first"
		exit 0
	fi

	if [ -n "${IMAPTLS_BIN:-}" ]; then
		bindir=$IMAPTLS_BIN
	else
		build
		bindir=bin
	fi
	need_go
	work=$(mktemp -d) || die "unable to make a temporary directory"
	trap 'rm -rf "$work"' EXIT
	trap 'exit 111' HUP INT TERM
	CGO_ENABLED=0 go build -o "$work/mdman" ./internal/mdman || die "unable to build internal/mdman"

	# the list of what goes where: mode, path below PREFIX, source (last:
	# read gives it whole, spaces and all)
	refs=
	for p in $programs; do
		name=${p#*:}
		sec=8
		case " $man1 " in *" $name "*) sec=1 ;; esac
		refs="$refs -r $name:$sec"
	done
	: >"$work/list"
	for p in $programs; do
		dir=${p%%:*}
		name=${p#*:}
		[ -x "$bindir/$name" ] || die "no program $bindir/$name: build first (sh redo.do)"
		sec=8
		case " $man1 " in *" $name "*) sec=1 ;; esac
		date=$(git log -1 --format=%cs -- "$dir/README.md" 2>/dev/null) || date=
		# shellcheck disable=SC2086
		"$work/mdman" ${date:+-d "$date"} $refs "$name" "$sec" "$dir/README.md" >"$work/$name.$sec" ||
			exit 100 # mdman said why
		echo "755 bin/$name $bindir/$name" >>"$work/list"
		echo "644 share/man/man$sec/$name.$sec $work/$name.$sec" >>"$work/list"
	done
	find service -type f ! -name '*.go' ! -name '.*' ! -name '*~' ! -path '*/testdata/*' | LC_ALL=C sort >"$work/service"
	while IFS= read -r f; do
		rel=${f#service/}
		mode=644
		[ -x "$f" ] && mode=755
		case " $hooks " in
		*" $rel "*) echo "755 lib/imap-tls/$rel $f" >>"$work/list" ;;
		*) echo "$mode share/imap-tls/$rel $f" >>"$work/list" ;;
		esac
	done <"$work/service"

	# put mode rel src: install src as PREFIX/rel unless it is there already
	changed=0
	put() {
		dst=$root/$2
		if [ -f "$dst" ] && [ ! -h "$dst" ] && cmp -s "$3" "$dst" && [ "$(stat -c %a "$dst")" = "$1" ]; then
			return 0
		fi
		[ -d "$dst" ] && die "$dst is a directory"
		mkdir -p "${dst%/*}" || die "unable to make ${dst%/*}"
		new=${dst%/*}/.${dst##*/}.imap-tls-new
		rm -f "$new"
		cp "$3" "$new" && chmod "$1" "$new" || die "unable to write $new"
		sync "$new" 2>/dev/null || :
		mv -f "$new" "$dst" || die "unable to rename $new to $dst"
		changed=$((changed + 1))
		say "installed $dst"
	}
	# the previous install's list, checked before anything is written
	if [ -f "$root/$manifest" ]; then
		while IFS= read -r rel; do check_rel "$rel"; done <"$root/$manifest"
	fi
	while read -r mode rel src; do
		check_rel "$rel"
		put "$mode" "$rel" "$src"
	done <"$work/list"

	# what the previous install put there and this one does not ship
	cut -d' ' -f2 "$work/list" | LC_ALL=C sort >"$work/MANIFEST"
	if [ -f "$root/$manifest" ]; then
		while IFS= read -r rel; do
			grep -qxF "$rel" "$work/MANIFEST" && continue
			rm -f "$root/$rel" || die "unable to remove $root/$rel"
			say "removed $root/$rel (no longer shipped)"
			changed=$((changed + 1))
		done <"$root/$manifest"
	fi
	put 644 "$manifest" "$work/MANIFEST"
	say "installed under $root: $(wc -l <"$work/MANIFEST") files, listed in $manifest; $changed written, the others were there already"
	;;
clean)
	rm -rf bin
	;;
*)
	echo "redo.do: usage: sh redo.do [ all | test | demo | bench | fuzz | install | uninstall | clean ]" >&2
	exit 100
	;;
esac
