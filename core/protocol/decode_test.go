package protocol

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The decoder's shortcuts (eight digits at once, decimals without strconv,
// keys compared as words, plain strings in place) must give what the
// reference decoder gives, at their edges as well as in the common case.

// agree decodes body with both decoders and fails unless they accept the
// same envelope or both refuse it.
func agree(t *testing.T, body string) {
	t.Helper()
	got, gotErr := DecodeString(body)
	want, wantErr := decodeReference([]byte(body))
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%s\nDecode: %v\nreference: %v", body, gotErr, wantErr)
	case gotErr != nil && gotErr.Error() != wantErr.Error():
		t.Fatalf("%s\nDecode refused with %q\nreference with %q", body, gotErr, wantErr)
	case !reflect.DeepEqual(got, want):
		t.Fatalf("%s\nDecode:    %#v\nreference: %#v", body, got, want)
	}
}

// withTask puts a task's fields (JSON text) into a v2 envelope.
func withTask(fields string) string {
	return `{"v":2,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T12:00:00Z","slots":1,"tasks":[{"op":"o","subtask":0,"state":"running",` + fields + `}]}`
}

func TestIntegersMatchTheReference(t *testing.T) {
	for _, n := range []string{
		"0", "7", "10", "1234567", "12345678", "123456789", "9999999999999999",
		"1234567890123456", "12345678901234567", "123456789012345678",
		"1234567890123456789", "18446744073709551615", "18446744073709551616",
		"99999999999999999999999", "01", "00000000", "-1", "-0", "1e3", "1.0", "1E+2",
		"1234567a", "12345678-", "1 ", " 1", "+1", "0x10", `"1"`, "null", "true",
	} {
		agree(t, withTask(`"records_in":`+n))
		agree(t, withTask(`"watermark_ms":`+n))
		agree(t, withTask(`"records_in":`+n+`,"records_out":1`))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.Uint64() >> rng.IntN(64)
		agree(t, withTask(`"bytes_in":`+strconv.FormatUint(n, 10)))
	}
}

func TestEightDigits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0123456789/:.-eE \x00\xff"
	for range 100_000 {
		var b [8]byte
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = '0' + byte(rng.IntN(10))
			}
		}
		s := string(b[:])
		want := strings.Trim(s, "0123456789") == "" && !strings.ContainsAny(s, alphabet[10:])
		v := word(s, 0)
		if eightDigits(v) != want {
			t.Fatalf("eightDigits(%q) = %v, want %v", s, !want, want)
		}
		if want {
			n, _ := strconv.ParseUint(s, 10, 64)
			if got := eightValue(v); got != n {
				t.Fatalf("eightValue(%q) = %d, want %d", s, got, n)
			}
		}
	}
}

func TestDecimalsMatchTheReference(t *testing.T) {
	for _, f := range []string{
		"0", "1", "0.125", "0.1", "0.3", "0.5", "0.999999999999999", "0.1234567890123456",
		"0.30000000000000004", "1.0", "0.0", "-0", "-0.0", "0.", ".5", "00.5", "1e-1",
		"0.5e0", "5E-1", "0.12345678901234", "0.123456789012345", "1.00000000000000",
		"0.000000000000001", "2", "-0.5", "1.5", "0.5x", "0.5 ",
	} {
		agree(t, withTask(`"backpressure":`+f))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		x := rng.Float64()
		for _, prec := range []int{-1, 3, 6, 15} {
			agree(t, withTask(`"backpressure":`+strconv.FormatFloat(x, 'f', prec, 64)))
		}
	}
}

func TestKeysAndStringsMatchTheReference(t *testing.T) {
	for _, body := range []string{
		// White space everywhere it may go.
		" {\n\t\"v\" : 2 , \"job\" :\"j\", \"run\":1,\"worker\":\"w\",\"seq\":1,\"sent_at\":\"2026-03-01T12:00:00Z\",\"slots\" :1 , \"tasks\" : [ { \"op\" : \"o\" , \"subtask\" : 0 , \"state\" : \"running\" } ] } \r\n",
		// Fields out of order, and in another case.
		`{"slots":1,"sent_at":"2026-03-01T12:00:00Z","seq":1,"worker":"w","run":1,"job":"j","V":2,"Tasks":[{"State":"running","SUBTASK":0,"op":"o"}]}`,
		// A key that only starts like the next one, or runs past the body.
		withTask(`"records_inx":1`),
		withTask(`"records_in"`),
		`{"v":2,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T12:00:00Z","slots"`,
		`{"v":2,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T12:00:00Z","slo`,
		// Strings with escapes, beyond ASCII, invalid UTF-8, control bytes.
		withTask(`"checkpointed":1,"checkpoint_metadata":"s3://b/k\"ey\\n\u00e9"`),
		withTask(`"checkpointed":1,"checkpoint_metadata":"s3://b/é"`),
		withTask("\"checkpointed\":1,\"checkpoint_metadata\":\"s3://b/\xff\""),
		withTask("\"checkpointed\":1,\"checkpoint_metadata\":\"s3://b/\x01\""),
		withTask(`"checkpointed":1,"checkpoint_metadata":"unterminated`),
		// Task states spelled as workers send them, and otherwise.
		strings.Replace(withTask(`"committed":1`), `"running"`, `"runn\u0069ng"`, 1),
		strings.Replace(withTask(`"committed":1`), `"running"`, `"runningx"`, 1),
		strings.Replace(withTask(`"committed":1`), `"running"`, `"failed"`, 1),
		strings.Replace(withTask(`"committed":1`), `"running"`, ` null`, 1),
	} {
		agree(t, body)
	}
}
