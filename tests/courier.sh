#!/bin/sh
# courier.sh: Courier's imaplogin and pop3login for the tests and the demo,
# from Debian's packages, without installing them.
#
#   sh tests/courier.sh fetch             download and unpack the packages into
#                                         the cache (once; later calls reuse it)
#   sh tests/courier.sh start DIR         fetch; lay out DIR (configuration, the
#                                         userdb, alice's Maildir); start
#                                         authdaemond; wait until it answers
#   sh tests/courier.sh stop DIR          stop authdaemond, wait until it is gone
#   sh tests/courier.sh imaplogin DIR     exec Courier's IMAP login server on
#                                         stdin/stdout: imaplogin /usr/bin/imapd Maildir
#   sh tests/courier.sh pop3login DIR     exec Courier's POP3 login server:
#                                         courierpop3login courierpop3d Maildir
#   sh tests/courier.sh run DIR PROG...   exec PROG in Courier's namespace
#   sh tests/courier.sh withconf FILE PROG...
#                                         exec PROG with FILE's variables (a
#                                         Courier configuration file) added to
#                                         the environment
#
# Courier's login servers need TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP and
# TCPLOCALPORT, as tcpserver sets them (pop3login dies of a null pointer
# at PASS without TCPLOCALIP).
#
# Why a namespace: Debian 12's courier-imap and courier-pop conflict with
# dovecot-imapd and dovecot-pop3d (both provide imap-server, pop3-server),
# which the other tests need installed, and Courier's paths are compiled
# in (/etc/courier, /run/courier/authdaemon/socket, /usr/lib/courier,
# /usr/lib/courier-authlib, libraries in /usr/lib). So the packages are
# unpacked (dpkg -x) into the cache, and every Courier program runs in a
# private mount namespace (unshare -m) where read-only overlays put the
# unpacked /usr over the system's, DIR/etc over /etc, and DIR/authdaemon
# over /run/courier/authdaemon (a bind mount, so that authdaemond and
# every connection's imaplogin share the socket). Nothing outside DIR and
# the cache is changed, except creating the mail account imaptlsmail.
#
# The configuration is Debian's /etc/courier/imapd and pop3d (what the
# package's start scripts read), with authmodulelist="authuserdb", a
# userdb of alice (password secret) and bob (password hunter2), mail owned
# by imaptlsmail. imaplogin and pop3login get the variables of
# DIR/etc/courier/imapd (or pop3d) in their environment, as Debian's start
# script gives them, except those the caller has set already (TCPREMOTEIP,
# IMAP_TLS, IMAP_STARTTLS, ...): the proxy's environment wins.
#
# Environment: COURIER_CACHE, the cache (default
# /var/cache/imap-tls-test/courier). Runs as root. Exit 100 on a usage
# error, 111 when something fails.

set -u

prog=courier.sh
. "$(dirname "$0")/daemon.sh"
cache=${COURIER_CACHE:-/var/cache/imap-tls-test/courier}
# The packages: the login programs, the servers, authlib with its daemon
# and userdb module, and the libraries they link that Debian 12 does not
# install by default.
packages='courier-base courier-imap courier-pop courier-authlib courier-authdaemon courier-authlib-userdb libcourier-unicode4 libgamin0 gamin libidn12 libltdl7 libgdbm6'

usage() {
	echo "$prog: usage: $prog fetch | start DIR | stop DIR | imaplogin DIR | pop3login DIR | run DIR prog... | withconf FILE prog..." >&2
	exit 100
}

# fetch: the unpacked packages in $cache/root, made once: apt-get download
# into a new directory, dpkg -x each, then a rename, so that a half-made
# tree is never taken for the cache. A lock keeps two callers from
# fetching at once.
fetch() {
	[ -x "$cache/root/usr/lib/courier/courier/imaplogin" ] && return 0
	command -v apt-get >/dev/null 2>&1 || fatal "unable to fetch Courier: apt-get not found (Debian 12 needed)"
	mkdir -p "$cache" || fatal "unable to create $cache"
	exec 9>"$cache/.lock" || fatal "unable to create $cache/.lock"
	flock 9 || fatal "unable to lock $cache/.lock"
	if [ ! -x "$cache/root/usr/lib/courier/courier/imaplogin" ]; then
		tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || fatal "unable to create a directory in $cache"
		chmod 0755 "$tmp"
		echo "$prog: fetching Courier into $cache: $packages" >&2
		# apt-get download runs as _apt when it can: give it the directory
		chown _apt "$tmp" 2>/dev/null
		# shellcheck disable=SC2086
		if ! (cd "$tmp" && apt-get download -q $packages >download.log 2>&1); then
			# a machine whose package lists are gone (a fresh image)
			apt-get update -q >/dev/null 2>&1
			# shellcheck disable=SC2086
			(cd "$tmp" && apt-get download -q $packages >download.log 2>&1) || {
				cat "$tmp/download.log" >&2
				rm -rf "$tmp"
				fatal "unable to download Courier's packages with apt-get download ($packages)"
			}
		fi
		mkdir "$tmp/root" || fatal "unable to create $tmp/root"
		for deb in "$tmp"/*.deb; do
			dpkg -x "$deb" "$tmp/root" || { rm -rf "$tmp"; fatal "unable to unpack $deb"; }
		done
		(cd "$tmp" && ls *.deb >packages.txt)
		rm -f "$tmp"/*.deb
		rm -rf "$cache/root" "$cache/packages.txt"
		mv "$tmp/root" "$cache/root" && mv "$tmp/packages.txt" "$cache/packages.txt" ||
			fatal "unable to move the unpacked packages into $cache"
		rm -rf "$tmp"
	fi
	exec 9>&-
	[ -x "$cache/root/usr/lib/courier/courier/imaplogin" ] || fatal "unable to find imaplogin in $cache/root"
}

# enter DIR PROG...: exec PROG in a new mount namespace with Courier's
# paths in place (see the top of this file). The mounts are private to the
# namespace and go with its last process.
enter() {
	dir=$1
	shift
	[ -d "$cache/root/usr" ] || fatal "unable to find Courier in $cache: run: sh $0 fetch"
	[ -d "$dir/etc/courier" ] || fatal "unable to find $dir/etc/courier: run: sh $0 start $dir"
	exec unshare -m --propagation private sh -c '
		set -e
		c=$1 d=$2
		shift 2
		mount -t overlay courier-usr -o "lowerdir=$c/root/usr:/usr" /usr
		mount -t overlay courier-etc -o "lowerdir=$d/etc:/etc" /etc
		mount -t overlay courier-run -o "lowerdir=$d/runlower:/run" /run
		mount --bind "$d/authdaemon" /run/courier/authdaemon
		exec "$@"
	' courier-ns "$cache" "$dir" "$@"
}

# withconf FILE PROG...: exec PROG with the variables FILE sets (a Courier
# configuration file, shell syntax) added to the environment, except
# those already set.
withconf() {
	conf=$1
	shift
	exec sh -c '
		conf=$1
		shift
		# what the caller set wins: remember it, read the file, restore
		saved=$(export -p)
		set -a
		. "$conf"
		set +a
		eval "$saved"
		exec "$@"
	' withconf "$conf" "$@"
}

# authok DIR: true when authdaemond in DIR answers and accepts alice's
# password.
authok() {
	[ -S "$1/authdaemon/socket" ] && (enter "$1" /usr/sbin/authtest -s imap alice secret) >/dev/null 2>&1
}

start() {
	fetch
	ensure_account
	command -v unshare >/dev/null 2>&1 || fatal "unshare not found: apt-get install util-linux"
	command -v openssl >/dev/null 2>&1 || fatal "openssl not found: apt-get install openssl"
	uid=$(id -u "$mailacct") gid=$(id -g "$mailacct")
	mkdir -p "$1" || fatal "unable to create $1"
	dir=$(absdir "$1") || exit 111
	if [ -f "$dir/authdaemond.pid" ] && kill -0 "$(cat "$dir/authdaemond.pid")" 2>/dev/null; then
		fatal "an authdaemond is already running in $dir"
	fi
	chmod 0755 "$dir" || fatal "unable to chmod $dir"
	mkdir -p "$dir/etc/courier" "$dir/runlower/courier/authdaemon" "$dir/authdaemon" "$dir/home" ||
		fatal "unable to create directories in $dir"
	chmod 0750 "$dir/authdaemon"
	# Debian's configuration files, then our changes: the userdb module
	# only, one authdaemond process, and no TLS of Courier's own
	cp "$cache/root/etc/courier/imapd" "$cache/root/etc/courier/pop3d" "$dir/etc/courier/" ||
		fatal "unable to copy Courier's configuration"
	cat >"$dir/etc/courier/authdaemonrc" <<EOF || fatal "unable to write $dir/etc/courier/authdaemonrc"
# written by tests/courier.sh
authmodulelist="authuserdb"
daemons=1
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=""
LOGGEROPTS=""
EOF
	# the userdb: alice and bob, passwords as crypt(3) SHA-512 hashes
	: >"$dir/etc/courier/userdb" && chmod 0600 "$dir/etc/courier/userdb" || fatal "unable to write the userdb"
	for up in alice:secret bob:hunter2; do
		u=${up%%:*} pw=${up#*:}
		hash=$(openssl passwd -6 "$pw") || fatal "unable to hash a password with openssl"
		printf '%s\tuid=%s|gid=%s|home=%s|mail=%s|systempw=%s\n' "$u" "$uid" "$gid" \
			"$dir/home/$u" "$dir/home/$u/Maildir" "$hash" >>"$dir/etc/courier/userdb"
	done
	(enter "$dir" true) ||
		fatal "unable to put Courier's paths in place in a private mount namespace (unshare -m, overlayfs on /usr, /etc, /run): this needs root with CAP_SYS_ADMIN and overlayfs"
	(enter "$dir" /usr/sbin/makeuserdb -f "$dir/etc/courier/userdb") || fatal "unable to make the userdb with makeuserdb"
	homes "$dir" '\n'
	rm -f "$dir/authdaemon/socket"
	# authdaemond in the foreground, its own namespace, its messages in
	# DIR/authdaemond.log; setsid: no terminal, its own process group
	setsid sh -c '
		echo $$ >"$2/authdaemond.pid"
		exec sh "$1" run "$2" sh -c "set -a; . /etc/courier/authdaemonrc; exec /usr/lib/courier/courier-authlib/authdaemond"
	' start "$0" "$dir" </dev/null >>"$dir/authdaemond.log" 2>&1 &
	waitfor "authenticate alice through authdaemond in $dir" "$dir/authdaemond.log" authok "$dir"
}

stop() {
	dir=$(absdir "$1") || exit 111
	[ -f "$dir/authdaemond.pid" ] || exit 0
	pid=$(cat "$dir/authdaemond.pid")
	kill -TERM "$pid" 2>/dev/null
	waitgone "$pid" authdaemond
	rm -f "$dir/authdaemond.pid"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
fetch) [ $# -eq 0 ] || usage; fetch ;;
start) [ $# -eq 1 ] || usage; start "$1" ;;
stop) [ $# -eq 1 ] || usage; stop "$1" ;;
imaplogin)
	[ $# -eq 1 ] || usage
	dir=$(absdir "$1") || exit 111
	enter "$dir" sh "$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")" withconf /etc/courier/imapd \
		/usr/lib/courier/courier/imaplogin /usr/bin/imapd Maildir
	;;
pop3login)
	[ $# -eq 1 ] || usage
	dir=$(absdir "$1") || exit 111
	enter "$dir" sh "$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")" withconf /etc/courier/pop3d \
		/usr/lib/courier/courier/courierpop3login /usr/lib/courier/courier/courierpop3d Maildir
	;;
withconf) [ $# -ge 2 ] || usage; withconf "$@" ;;
run) [ $# -ge 2 ] || usage; dir=$(absdir "$1") || exit 111; shift; enter "$dir" "$@" ;;
*) usage ;;
esac
