#!/bin/sh
# dovecot.sh: a private, login-capable Dovecot for the tests and the demo.
#
#   sh tests/dovecot.sh start DIR         lay out DIR, seed alice's INBOX,
#                                         start Dovecot, wait for DIR/imap.sock
#   sh tests/dovecot.sh stop DIR          stop it, wait until it is gone
#   sh tests/dovecot.sh imap DIR [USER]   exec the stdio imap binary,
#                                         pre-authenticated (greets PREAUTH)
#   sh tests/dovecot.sh login DIR         exec socat -lf /dev/null STDIO UNIX-CONNECT:DIR/imap.sock
#   sh tests/dovecot.sh pop3login DIR     exec socat STDIO UNIX-CONNECT:DIR/pop3.sock
#                                         (POP3, when dovecot-pop3d is installed)
#   sh tests/dovecot.sh haproxy DIR       exec socat STDIO TCP:127.0.0.1:PORT, the
#   sh tests/dovecot.sh pop3haproxy DIR   login service's loopback port with
#                                         haproxy = yes (PORT in DIR/imap-haproxy.port,
#                                         DIR/pop3-haproxy.port): the client's address
#                                         comes in a PROXY header (stunnel-imap -H)
#
# $DOVECOT_CONF_EXTRA, when set, is appended to the configuration (e.g.
# disable_plaintext_auth = yes). $DOVECOT_IMAP_HAPROXY_PORT and
# $DOVECOT_POP3_HAPROXY_PORT, when set, are the haproxy listeners' ports
# (the tests' port allocator picks them); otherwise ports free now.
#
# Users: alice (password secret), bob (password hunter2). Mail is owned by
# the system account imaptlsmail (created when missing). Nothing outside
# DIR is touched, except creating that account. Runs as root.
# Exit 100 on a usage error, 111 when something fails.

set -u

prog=dovecot.sh
. "$(dirname "$0")/daemon.sh"

usage() {
	echo "$prog: usage: $prog start DIR | stop DIR | imap DIR [USER] | login DIR | pop3login DIR | haproxy DIR | pop3haproxy DIR" >&2
	exit 100
}

# sockup SOCK: true when SOCK accepts and a Dovecot greeting comes back.
sockup() {
	[ -S "$1" ] || return 1
	printf 'a LOGOUT\r\n' | socat -T 3 STDIO "UNIX-CONNECT:$1" 2>/dev/null | grep -q '^\* OK'
}

# freeport: a loopback TCP port free now.
freeport() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# authok DIR: true when Dovecot's auth process in DIR accepts alice.
authok() { doveadm -c "$1/dovecot.conf" auth test alice secret >/dev/null 2>&1; }

start() {
	command -v dovecot >/dev/null 2>&1 || fatal "dovecot not found: apt-get install dovecot-imapd"
	command -v socat >/dev/null 2>&1 || fatal "socat not found: apt-get install socat"
	command -v doveadm >/dev/null 2>&1 || fatal "doveadm not found: apt-get install dovecot-core"
	ensure_account
	uid=$(id -u "$mailacct") gid=$(id -g "$mailacct")
	mkdir -p "$1" || fatal "unable to create $1"
	dir=$(absdir "$1") || exit 111
	if [ -f "$dir/run/master.pid" ] && kill -0 "$(cat "$dir/run/master.pid")" 2>/dev/null; then
		fatal "a dovecot is already running in $dir"
	fi
	# the imap processes run as imaptlsmail and must reach DIR/home
	chmod 0755 "$dir" || fatal "unable to chmod $dir"
	mkdir -p "$dir/run" "$dir/state" "$dir/home" || fatal "unable to create directories in $dir"
	# POP3 too, when dovecot-pop3d is installed: its login service on
	# DIR/pop3.sock, as IMAP's on DIR/imap.sock.
	protocols=imap pop3conf=
	# The haproxy listeners: loopback ports the kernel finds free now.
	imaphp=${DOVECOT_IMAP_HAPROXY_PORT:-$(freeport)} || fatal "unable to find a free port"
	echo "$imaphp" >"$dir/imap-haproxy.port"
	if [ -x /usr/lib/dovecot/pop3-login ]; then
		protocols="imap pop3"
		pop3hp=${DOVECOT_POP3_HAPROXY_PORT:-$(freeport)} || fatal "unable to find a free port"
		echo "$pop3hp" >"$dir/pop3-haproxy.port"
		pop3conf="service pop3-login {
  unix_listener $dir/pop3.sock {
    mode = 0666
  }
  inet_listener pop3-haproxy {
    address = 127.0.0.1
    port = $pop3hp
    haproxy = yes
  }
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
  process_limit = 1000
}
service pop3 {
  process_limit = 1000
}"
	fi
	cat >"$dir/dovecot.conf" <<EOF || fatal "unable to write $dir/dovecot.conf"
# written by tests/dovecot.sh: a private Dovecot, nothing system-wide
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
instance_name = imaptls-$(echo "$dir" | cksum | cut -d' ' -f1)
protocols = $protocols
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
default_client_limit = 4000
auth_verbose = yes
auth_mechanisms = plain login
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
mail_location = maildir:~/Maildir
mail_max_userip_connections = 10000
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}
haproxy_trusted_networks = 127.0.0.0/8 ::1
haproxy_timeout = 35s
service imap-login {
  unix_listener $dir/imap.sock {
    mode = 0666
  }
  inet_listener imap-haproxy {
    address = 127.0.0.1
    port = $imaphp
    haproxy = yes
  }
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
  process_limit = 1000
}
service imap {
  process_limit = 1000
}
$pop3conf
EOF
	chmod 0644 "$dir/dovecot.conf"
	printf 'alice:{PLAIN}secret\nbob:{PLAIN}hunter2\n' >"$dir/passwd" || fatal "unable to write $dir/passwd"
	# the auth process runs as dovecot
	chown root:dovecot "$dir/passwd" && chmod 0640 "$dir/passwd" || fatal "unable to chmod $dir/passwd"
	homes "$dir" '\r\n'
	# the stdio imap binary (sub-command imap) logs here, as imaptlsmail
	touch "$dir/imap.log" && chown "$uid:$gid" "$dir/imap.log" || fatal "unable to create $dir/imap.log"
	rm -f "$dir/imap.sock" "$dir/pop3.sock"
	printf '%s\n' "${DOVECOT_CONF_EXTRA:-}" >>"$dir/dovecot.conf"
	# the daemon must not keep the caller's stdout/stderr open (a caller
	# that reads them to end of file would wait forever)
	if ! dovecot -c "$dir/dovecot.conf" </dev/null >"$dir/start.log" 2>&1; then
		cat "$dir/start.log" >&2
		fatal "unable to start dovecot (see $dir/dovecot.log)"
	fi
	waitfor "reach dovecot on $dir/imap.sock" "$dir/dovecot.log" sockup "$dir/imap.sock"
	# The socket accepts before the auth process answers: a LOGIN sent
	# then gets "Waiting for authentication process to respond" and may
	# outwait its client on a loaded machine. Wait until auth answers.
	waitfor "authenticate alice through dovecot in $dir" "$dir/dovecot.log" authok "$dir"
}

stop() {
	dir=$(absdir "$1") || exit 111
	[ -f "$dir/dovecot.conf" ] || fatal "unable to find $dir/dovecot.conf"
	pid=
	[ -f "$dir/run/master.pid" ] && pid=$(cat "$dir/run/master.pid")
	doveadm -c "$dir/dovecot.conf" stop >/dev/null 2>&1
	[ -n "$pid" ] || exit 0
	waitgone "$pid" dovecot
}

imap() {
	dir=$(absdir "$1") || exit 111
	user=${2:-alice}
	case $user in
	'' | */* | .*) fatal "unable to use user name $user" ;;
	esac
	[ -d "$dir/home/$user" ] || fatal "unable to find $dir/home/$user"
	exec env USER="$user" HOME="$dir/home/$user" setuidgid "$mailacct" \
		/usr/lib/dovecot/imap -c "$dir/dovecot.conf" \
		-o log_path="$dir/imap.log" -o stats_writer_socket_path=
}

login() {
	dir=$(absdir "$1") || exit 111
	# shut-down: pass Dovecot's end of file on at once as a half-close
	# (stdio is a socket under makesock); -t 5: then wait up to 5 s for
	# the other side's last bytes (socat's default is half a second)
	exec socat -lf /dev/null -t 5 STDIO,shut-down "UNIX-CONNECT:$dir/imap.sock"
}

# haproxy DIR NAME: socat to the haproxy listener NAME (imap, pop3).
haproxy() {
	dir=$(absdir "$1") || exit 111
	[ -f "$dir/$2-haproxy.port" ] || fatal "unable to find $dir/$2-haproxy.port"
	exec socat -lf /dev/null -t 5 STDIO,shut-down "TCP:127.0.0.1:$(cat "$dir/$2-haproxy.port")"
}

pop3login() {
	dir=$(absdir "$1") || exit 111
	[ -S "$dir/pop3.sock" ] || fatal "unable to find $dir/pop3.sock: is dovecot-pop3d installed?"
	exec socat -lf /dev/null -t 5 STDIO,shut-down "UNIX-CONNECT:$dir/pop3.sock"
}

[ $# -ge 2 ] || usage
cmd=$1
shift
case $cmd in
start) [ $# -eq 1 ] || usage; start "$1" ;;
stop) [ $# -eq 1 ] || usage; stop "$1" ;;
imap) [ $# -le 2 ] || usage; imap "$@" ;;
login) [ $# -eq 1 ] || usage; login "$1" ;;
pop3login) [ $# -eq 1 ] || usage; pop3login "$1" ;;
haproxy) [ $# -eq 1 ] || usage; haproxy "$1" imap ;;
pop3haproxy) [ $# -eq 1 ] || usage; haproxy "$1" pop3 ;;
*) usage ;;
esac
