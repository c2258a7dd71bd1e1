# daemon.sh: what dovecot.sh and courier.sh share, sourced by both after
# they set $prog: the message grammar, the mail account, the homes with
# alice's seed messages, waiting for a daemon to come up and to go away.
# Runs as root.

mailacct=imaptlsmail

fatal() { echo "$prog: fatal: $*" >&2; exit 111; }

# absdir DIR: DIR as an absolute path (it must exist): dir=$(absdir DIR) || exit 111
absdir() { (cd "$1" 2>/dev/null && pwd -P) || fatal "unable to enter $1"; }

# ensure_account: the system account that owns the mail, created when
# missing.
ensure_account() {
	id -u "$mailacct" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --shell /usr/sbin/nologin "$mailacct" >/dev/null 2>&1 ||
		id -u "$mailacct" >/dev/null 2>&1 || fatal "unable to create account $mailacct"
}

# homes DIR EOL: DIR/home/alice/Maildir and DIR/home/bob/Maildir, three
# seed messages in alice's when it is empty, every line ending in EOL
# (\r\n for Dovecot; \n for Courier, which stores LF and sends CRLF), all
# owned by the mail account.
homes() {
	for u in alice bob; do
		mkdir -p "$1/home/$u/Maildir/cur" "$1/home/$u/Maildir/new" "$1/home/$u/Maildir/tmp" ||
			fatal "unable to create $1/home/$u/Maildir"
	done
	md=$1/home/alice/Maildir
	if [ -z "$(ls -A "$md/new")$(ls -A "$md/cur")" ]; then
		now=$(date +%s)
		for i in 1 2 3; do
			f="$md/new/$now.M${i}P$$.imaptls"
			{
				printf "From: Bob <bob@example.org>$2"
				printf "To: Alice <alice@example.org>$2"
				printf "Subject: seed message %s$2" "$i"
				printf "Date: Thu, 26 Nov 2026 22:00:0%s +0000$2" "$i"
				printf "Message-ID: <seed-%s@imap-tls.test>$2" "$i"
				printf "$2"
				printf "This is seed message number %s.$2" "$i"
			} >"$f" || fatal "unable to write $f"
		done
	fi
	chown -R "$(id -u "$mailacct"):$(id -g "$mailacct")" "$1/home" || fatal "unable to chown $1/home"
}

# waitfor WHAT LOG COMMAND...: run COMMAND every 0.2 s until it succeeds;
# after 20 seconds show the end of LOG and fail, saying "unable to WHAT".
waitfor() {
	what=$1 log=$2
	shift 2
	i=0
	while ! "$@"; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			tail -5 "$log" >&2 2>/dev/null
			fatal "unable to $what after 20 seconds"
		fi
		sleep 0.2
	done
}

# waitgone PID WHAT: wait until PID has exited; KILL it after 5 seconds,
# fail after 10 saying "unable to stop WHAT PID".
waitgone() {
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -eq 50 ] && kill -KILL "$1" 2>/dev/null
		[ $i -ge 100 ] && fatal "unable to stop $2 $1"
		sleep 0.1
	done
}
