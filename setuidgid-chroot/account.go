package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// target is who prog runs as: one uid, one gid, and the exact list of
// supplementary groups.
type target struct {
	uid, gid uint32
	groups   []uint32
}

// entry is one line of /etc/passwd or /etc/group reduced to what we use:
// its name and its numeric id (uid or gid), and for passwd the primary gid.
type entry struct {
	name string
	id   uint32
	gid  uint32 // passwd only
}

// parseDB reads /etc/passwd (fields == 7) or /etc/group (fields == 4) by
// hand: no NSS, no cgo, the files as they are before the chroot. Blank
// lines, comments and NIS compat lines (+, -) are skipped; any other line
// that does not have the right shape is an error, since a half-understood
// account database is no base for dropping privilege.
//
// It runs once per connection: the fields are found in place, and only
// each entry's name is copied (splitting every line into strings cost
// more than the rest of the tool's own work).
func parseDB(data []byte, file string, fields int) ([]entry, error) {
	out := make([]entry, 0, bytes.Count(data, []byte("\n"))+1)
	for n := 0; len(data) > 0 || n == 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		if bytes.Count(line, []byte(":"))+1 != fields {
			return nil, fmt.Errorf("malformed line %d in %s", n+1, file)
		}
		// where fields 0 to 3 start and end (there are at least 4)
		var start, end [4]int
		for k, from := 0, 0; k < len(start); k++ {
			i := bytes.IndexByte(line[from:], ':')
			if i < 0 {
				i = len(line) - from
			}
			start[k], end[k] = from, from+i
			from += i + 1
		}
		if end[0] == 0 {
			return nil, fmt.Errorf("malformed line %d in %s", n+1, file)
		}
		id, ok := parseIDBytes(line[start[2]:end[2]])
		if !ok {
			return nil, fmt.Errorf("malformed id on line %d in %s", n+1, file)
		}
		e := entry{name: string(line[:end[0]]), id: id}
		if fields == 7 {
			if e.gid, ok = parseIDBytes(line[start[3]:end[3]]); !ok {
				return nil, fmt.Errorf("malformed gid on line %d in %s", n+1, file)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// parseIDBytes is parseID for a field in place: decimal digits only, at
// most 4294967294.
func parseIDBytes(b []byte) (uint32, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v = v*10 + uint64(c-'0'); v >= 0xffffffff {
			return 0, false
		}
	}
	return uint32(v), true
}

// parseID parses a decimal uid or gid. 4294967295 is (uid_t)-1, which the
// kernel reads as "leave unchanged", so it is never a valid id.
func parseID(s string) (uint32, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0xffffffff {
		return 0, fmt.Errorf("not a valid id: %q", s)
	}
	return uint32(v), nil
}

// accountTarget finds name in the passwd entries: uid and primary gid,
// and the primary gid as the only group (daemontools setuidgid does the
// same: supplementary groups would only widen what the jail may touch).
func accountTarget(passwd []entry, name string) (target, bool) {
	for _, e := range passwd {
		if e.name == name {
			return target{uid: e.id, gid: e.gid, groups: []uint32{e.gid}}, true
		}
	}
	return target{}, false
}

// envTarget reads the envuidgid convention: $UID, $GID and, when set,
// $GIDLIST (comma-separated; set but empty means no supplementary group).
// Without $GIDLIST the groups are exactly $GID.
func envTarget(getenv func(string) (string, bool)) (target, error) {
	var t target
	s, ok := getenv("UID")
	if !ok {
		return t, fmt.Errorf("$UID is not set")
	}
	var err error
	if t.uid, err = parseID(s); err != nil {
		return t, fmt.Errorf("$UID is %s", err)
	}
	if s, ok = getenv("GID"); !ok {
		return t, fmt.Errorf("$GID is not set")
	}
	if t.gid, err = parseID(s); err != nil {
		return t, fmt.Errorf("$GID is %s", err)
	}
	s, ok = getenv("GIDLIST")
	if !ok {
		t.groups = []uint32{t.gid}
		return t, nil
	}
	t.groups = []uint32{}
	if s == "" {
		return t, nil
	}
	for _, g := range strings.Split(s, ",") {
		id, err := parseID(g)
		if err != nil {
			return t, fmt.Errorf("$GIDLIST holds %s", err)
		}
		t.groups = append(t.groups, id)
	}
	return t, nil
}

// idRange is -r base:count: uid = gid = base + pid.
type idRange struct {
	base, count uint64
}

// maxID is the largest usable uid or gid: 4294967295 is (uid_t)-1.
const maxID = 0xfffffffe

func parseRange(s string) (idRange, error) {
	b, c, ok := strings.Cut(s, ":")
	if !ok {
		return idRange{}, errors.New("not base:count")
	}
	base, err1 := strconv.ParseUint(b, 10, 64)
	count, err2 := strconv.ParseUint(c, 10, 64)
	if err1 != nil || err2 != nil || b[0] == '+' || c[0] == '+' {
		return idRange{}, errors.New("not base:count, two decimal numbers")
	}
	return idRange{base: base, count: count}, nil
}

// check refuses a range that could hand two live processes the same uid,
// or hand one the uid of an existing account: count must cover every pid
// the kernel can give out (pids are below pid_max), the range must start
// at 1 or above and end at or below 4294967294, and it must hold neither
// 65534 (nobody, the kernel's overflow id) nor 65535 (the 16-bit -1) nor
// any uid of /etc/passwd nor any gid of /etc/group, since gid = uid.
func (r idRange) check(pidMax uint64, passwd, group []entry) error {
	if r.base < 1 {
		return fmt.Errorf("-r range must start at 1 or above: uid 0 is root")
	}
	if r.count < pidMax {
		return fmt.Errorf("-r count %d is below kernel.pid_max %d: two connections could share a uid (try -r 2000000000:4194304)", r.count, pidMax)
	}
	if r.count > maxID || r.base > maxID-r.count+1 {
		return fmt.Errorf("-r range %d:%d goes past uid %d", r.base, r.count, uint64(maxID))
	}
	last := r.base + r.count - 1
	in := func(id uint64) bool { return id >= r.base && id <= last }
	for _, id := range []uint64{65534, 65535} {
		if in(id) {
			return fmt.Errorf("-r range %d:%d includes uid %d", r.base, r.count, id)
		}
	}
	for _, e := range passwd {
		if in(uint64(e.id)) {
			return fmt.Errorf("-r range %d:%d includes uid %d of account %s in /etc/passwd", r.base, r.count, e.id, e.name)
		}
	}
	for _, e := range group {
		if in(uint64(e.id)) {
			return fmt.Errorf("-r range %d:%d includes gid %d of group %s in /etc/group", r.base, r.count, e.id, e.name)
		}
	}
	return nil
}

// target is the uid and gid of process pid: base + pid, one group.
func (r idRange) target(pid uint64) (target, error) {
	if pid >= r.count {
		return target{}, fmt.Errorf("pid %d is outside -r count %d", pid, r.count)
	}
	id := uint32(r.base + pid)
	return target{uid: id, gid: id, groups: []uint32{id}}, nil
}

// refuseRoot: this tool always drops privilege, so no id of the target may
// be root's.
func (t target) refuseRoot(who string) error {
	if t.uid == 0 {
		return fmt.Errorf("%s has uid 0: refusing to run as root", who)
	}
	if t.gid == 0 {
		return fmt.Errorf("%s has gid 0: refusing to run with root's group", who)
	}
	for _, g := range t.groups {
		if g == 0 {
			return fmt.Errorf("%s has group 0: refusing to run with root's group", who)
		}
	}
	return nil
}
