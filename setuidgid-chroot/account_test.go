package main

// parseDB finds the fields in place (it runs once per connection); this
// file keeps the obvious version, split into strings, and checks that
// both agree: the same entries, or an error on the same line.

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func splitParseDB(data []byte, file string, fields int) ([]entry, error) {
	var out []entry
	for n, raw := range bytes.Split(data, []byte("\n")) {
		line := string(bytes.TrimSuffix(raw, []byte("\r")))
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != fields || f[0] == "" {
			return nil, fmt.Errorf("malformed line %d in %s", n+1, file)
		}
		id, err := splitParseID(f[2])
		if err != nil {
			return nil, fmt.Errorf("malformed id on line %d in %s", n+1, file)
		}
		e := entry{name: f[0], id: id}
		if fields == 7 {
			if e.gid, err = splitParseID(f[3]); err != nil {
				return nil, fmt.Errorf("malformed gid on line %d in %s", n+1, file)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func splitParseID(s string) (uint32, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0xffffffff {
		return 0, fmt.Errorf("not a valid id: %q", s)
	}
	return uint32(v), nil
}

var dbSeeds = []string{
	"", "\n", "\n\n", "root:x:0:0:root:/root:/bin/sh", "root:x:0:0:root:/root:/bin/sh\n",
	"root:x:0:0:root:/root:/bin/sh\r\nimaptls:x:994:993::/nonexistent:/usr/sbin/nologin\r\n",
	"# comment\n+nis\n-nis\n\na:x:1:2:::\n", "a:x:007:0008:::\n", "a:x:4294967294:1:::\n",
	"a:x:4294967295:1:::\n", "a:x:4294967296:1:::\n", "a:x:99999999999999999999:1:::\n",
	"a:x:1:+1:::\n", "a:x:-1:1:::\n", "a:x: 1:1:::\n", "a:x:1_0:1:::\n", "a:x::1:::\n",
	":x:1:1:::\n", "a:x:1:1::\n", "a:x:1:1::::\n", "a\n", "a:x:1:\n", "g:x:1:\n", "g:x:1:a,b\n",
	"g:x:1\n", "g::1:\ng2:x:2:x:\n", "ok:x:1:1:::\nbroken:x\n", "a:x:1:1:::\r", "a:x:1:1:::\r\r\n",
	"\r\n", "#\n:\n", "é:x:1:1:::\n",
}

func TestParseDBAgrees(t *testing.T) {
	for _, s := range dbSeeds {
		checkParseDB(t, []byte(s))
	}
}

func FuzzParseDB(f *testing.F) {
	for _, s := range dbSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkParseDB)
}

func checkParseDB(t *testing.T, data []byte) {
	for _, fields := range []int{7, 4} {
		got, err := parseDB(data, "/etc/passwd", fields)
		want, werr := splitParseDB(data, "/etc/passwd", fields)
		if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("parseDB(%q, %d): error %v, want %v", data, fields, err, werr)
		}
		if err == nil && len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Fatalf("parseDB(%q, %d) = %+v, want %+v", data, fields, got, want)
		}
	}
}
