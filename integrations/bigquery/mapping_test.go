package bigquery

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	bq "cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/opentrackhq/opentrack"
)

func TestTableName(t *testing.T) {
	tests := []struct{ event, want string }{
		{"Order Completed", "order_completed"},
		{"orderCompleted", "order_completed"},
		{"order_completed", "order_completed"},
		{"Product Viewed!!", "product_viewed"},
		{"userID Set", "user_id_set"},
		{"1st Purchase", "1st_purchase"},
		// Standard tables and their dedupe views are guarded.
		{"Tracks", "_tracks"},
		{"users", "_users"},
		{"Pages View", "_pages_view"},
		{"accounts", "_accounts"},
		{"Tracks Viewed", "tracks_viewed"},
		// Nothing left after snake_case.
		{"注文", unnamedEventTable},
		{"!!!", unnamedEventTable},
		{"", unnamedEventTable},
		// BigQuery's limit is 1,024 bytes.
		{strings.Repeat("a", 2000), strings.Repeat("a", 1024)},
	}
	for _, tc := range tests {
		if got := TableName(tc.event); got != tc.want {
			t.Errorf("TableName(%q) = %q, want %q", tc.event, got, tc.want)
		}
	}
}

func TestColumnName(t *testing.T) {
	long := strings.Repeat("a", 400)
	tests := []struct{ prefix, key, want string }{
		{"", "firstName", "first_name"},
		{"", "first_name", "first_name"},
		{"", "First Name", "first_name"},
		{"", "userId", "user_id"},
		{"address", "streetName", "address_street_name"},
		{"context", "userAgent", "context_user_agent"},
		{"", "1st", "_1st"},
		{"", "$revenue", "revenue"},
		{"", "価格", ""},
		{"", "", ""},
		{"", long, long[:maxColumnName]},
	}
	for _, tc := range tests {
		if got := columnName(tc.prefix, tc.key); got != tc.want {
			t.Errorf("columnName(%q, %q) = %q, want %q", tc.prefix, tc.key, got, tc.want)
		}
	}
}

func TestToValue(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("", 2*3600))
	tests := []struct {
		name string
		in   any
		kind kind
		s    string
		typ  bq.FieldType
	}{
		{"string", "pro", kindString, "pro", bq.StringFieldType},
		{"RFC 3339 string", "2024-01-02T03:04:05Z", kindTime, "2024-01-02T03:04:05Z", bq.TimestampFieldType},
		{"RFC 3339 with offset and fraction", "2024-01-02T03:04:05.5+02:00", kindTime, "2024-01-02T03:04:05.5+02:00", bq.TimestampFieldType},
		{"date only is a string", "2024-01-02", kindString, "2024-01-02", bq.StringFieldType},
		{"near miss is a string", "2024-13-02T03:04:05Z", kindString, "2024-13-02T03:04:05Z", bq.StringFieldType},
		{"integer", json.Number("42"), kindInt, "42", bq.IntegerFieldType},
		{"negative integer", json.Number("-7"), kindInt, "-7", bq.IntegerFieldType},
		{"float", json.Number("9.99"), kindFloat, "9.99", bq.FloatFieldType},
		{"exponent", json.Number("1e3"), kindFloat, "1e3", bq.FloatFieldType},
		{"integer beyond INT64", json.Number("12345678901234567890"), kindFloat, "12345678901234567890", bq.FloatFieldType},
		{"beyond FLOAT64", json.Number("1e400"), kindString, "1e400", bq.StringFieldType},
		{"malformed json.Number", json.Number("12abc"), kindString, "12abc", bq.StringFieldType},
		{"bool", true, kindBool, "", bq.BooleanFieldType},
		{"Go int", 3, kindInt, "3", bq.IntegerFieldType},
		{"Go uint64 beyond INT64", uint64(math.MaxUint64), kindFloat, "18446744073709551615", bq.FloatFieldType},
		{"Go float", 2.5, kindFloat, "2.5", bq.FloatFieldType},
		{"Go float NaN", math.NaN(), kindFloat, "NaN", bq.FloatFieldType},
		{"Go time", ts, kindTime, "2024-05-06T05:08:09.123456Z", bq.TimestampFieldType},
		{"array", []any{json.Number("1"), "a<b"}, kindJSON, `[1,"a<b"]`, bq.StringFieldType},
		{"other Go value", map[string]int{"a": 1}, kindJSON, `{"a":1}`, bq.StringFieldType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := toValue(tc.in)
			if !ok || v.kind != tc.kind || v.text() != tc.s || v.fieldType() != tc.typ {
				t.Fatalf("toValue(%#v) = %+v (type %s), want kind %d %q (type %s)", tc.in, v, v.fieldType(), tc.kind, tc.s, tc.typ)
			}
		})
	}
	if _, ok := toValue(nil); ok {
		t.Fatal("nil must give no value")
	}
}

func TestConvert(t *testing.T) {
	str := func(s string) value { return value{kind: kindString, s: s} }
	num := func(s string) value { v, _ := toValue(json.Number(s)); return v }
	ts, _ := toValue("2024-01-02T04:04:05+01:00")
	c := func(typ bq.FieldType) column { return column{name: "c", typ: typ} }
	tests := []struct {
		name string
		v    value
		col  column
		want bq.Value
		out  outcome
	}{
		{"string into STRING", str("x"), c(bq.StringFieldType), "x", fits},
		{"integer into STRING", num("42"), c(bq.StringFieldType), "42", coerced},
		{"bool into STRING", value{kind: kindBool, b: true}, c(bq.StringFieldType), "true", coerced},
		{"timestamp into STRING keeps the text", ts, c(bq.StringFieldType), "2024-01-02T04:04:05+01:00", coerced},
		{"integer into INTEGER", num("42"), c(bq.IntegerFieldType), json.Number("42"), fits},
		{"whole float into INTEGER", num("4.0"), c(bq.IntegerFieldType), json.Number("4"), coerced},
		{"fraction into INTEGER", num("2.5"), c(bq.IntegerFieldType), nil, conflict},
		{"string into INTEGER", str("42"), c(bq.IntegerFieldType), nil, conflict},
		{"integer into FLOAT", num("10"), c(bq.FloatFieldType), json.Number("10"), coerced},
		{"float into FLOAT", num("9.5"), c(bq.FloatFieldType), json.Number("9.5"), fits},
		{"NaN into FLOAT", value{kind: kindFloat, s: "NaN"}, c(bq.FloatFieldType), "NaN", fits},
		{"string into FLOAT", str("x"), c(bq.FloatFieldType), nil, conflict},
		{"bool into BOOLEAN", value{kind: kindBool}, c(bq.BooleanFieldType), false, fits},
		{"string into BOOLEAN", str("true"), c(bq.BooleanFieldType), nil, conflict},
		{"timestamp into TIMESTAMP is UTC", ts, c(bq.TimestampFieldType), "2024-01-02T03:04:05Z", fits},
		{"string into TIMESTAMP", str("yesterday"), c(bq.TimestampFieldType), nil, conflict},
		{"number into TIMESTAMP", num("1700000000"), c(bq.TimestampFieldType), nil, conflict},
		{"number into NUMERIC", num("1.25"), c(bq.NumericFieldType), "1.25", fits},
		{"array into JSON", value{kind: kindJSON, s: `[1,2]`}, c(bq.JSONFieldType), `[1,2]`, fits},
		{"string into JSON", str(`a"b`), c(bq.JSONFieldType), `"a\"b"`, fits},
		{"string into DATE passes", str("2024-01-02"), c(bq.DateFieldType), "2024-01-02", fits},
		{"anything into RECORD", str("x"), c(bq.RecordFieldType), nil, conflict},
		{"anything into REPEATED", str("x"), column{typ: bq.StringFieldType, repeated: true}, nil, conflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, out := convert(tc.v, tc.col)
			if got != tc.want || out != tc.out {
				t.Fatalf("convert = %#v, %d; want %#v, %d", got, out, tc.want, tc.out)
			}
		})
	}
}

func TestJSONStringSize(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "line\nbreak\ttab", "<a href='x'>&</a>", "\x01\x1f", "héllo 注文", "\u2028", "bad\xffutf8"} {
		b, _ := json.Marshal(s)
		if got := jsonStringSize(s); got < len(b) {
			t.Errorf("jsonStringSize(%q) = %d, below the encoded length %d", s, got, len(b))
		}
	}
}

func TestEventIDWithoutMessageID(t *testing.T) {
	a := event(t, `{"type":"track","event":"x","userId":"u","timestamp":"2024-01-02T03:04:05Z"}`)
	b := event(t, `{"type":"track","event":"x","userId":"u","timestamp":"2024-01-02T03:04:05Z"}`)
	c := event(t, `{"type":"track","event":"y","userId":"u","timestamp":"2024-01-02T03:04:05Z"}`)
	if eventID(a) != eventID(b) || eventID(a) == eventID(c) || !strings.HasPrefix(eventID(a), "ot-") {
		t.Fatalf("ids: %s %s %s", eventID(a), eventID(b), eventID(c))
	}
	if id := eventID(event(t, `{"type":"track","event":"x","userId":"u","messageId":"m1"}`)); id != "m1" {
		t.Fatalf("id = %s, want the messageId", id)
	}
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12.5": true, "1e5": true, "-1.5E-3": true, "123456789012345678901234567890": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "+1": false, "1e": false, " 1": false, "1 ": false,
		"NaN": false, "Infinity": false, `"1"`: false, "true": false, "[1]": false, "1 2": false, "0x10": false,
	} {
		if got := isJSONNumber(s); got != want {
			t.Errorf("isJSONNumber(%q) = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkNumberValue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		numberValue("12345.678")
	}
}

func TestClassify(t *testing.T) {
	api := func(code int, reason string, header http.Header) error {
		return &googleapi.Error{Code: code, Message: "m", Header: header, Errors: []googleapi.ErrorItem{{Reason: reason}}}
	}
	h := http.Header{}
	h.Set("Retry-After", "7")
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
		wait      time.Duration
	}{
		{"400", api(400, "invalid", nil), true, 0},
		{"403 denied", api(403, "accessDenied", nil), true, 0},
		{"403 rate limit", api(403, "rateLimitExceeded", nil), false, 0},
		{"403 quota", api(403, "quotaExceeded", nil), false, 0},
		{"404", api(404, "notFound", nil), true, 0},
		{"408", api(408, "", nil), false, 0},
		{"429 with Retry-After", api(429, "", h), false, 7 * time.Second},
		{"503", api(503, "backendError", nil), false, 0},
		{"deadline", context.DeadlineExceeded, false, 0},
		{"network", errors.New("connection refused"), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classify("op", tc.err)
			if opentrack.IsPermanent(err) != tc.permanent || !errors.Is(err, tc.err) {
				t.Fatalf("classify = %v (permanent %v), want permanent %v", err, opentrack.IsPermanent(err), tc.permanent)
			}
			if d, ok := opentrack.RetryAfterDelay(err); tc.wait > 0 && (!ok || d != tc.wait) {
				t.Fatalf("Retry-After = %v, %v; want %v", d, ok, tc.wait)
			}
		})
	}
}

func TestErrorsArePrefixedOnce(t *testing.T) {
	// The BigQuery client's own errors start with "bigquery: " too.
	err := classify("create client", errors.New("bigquery: constructing client: no credentials"))
	if got := err.Error(); got != "bigquery: create client: constructing client: no credentials" {
		t.Fatalf("error = %q", got)
	}
}

// TestLandedKeysKeepTablesApart: one messageId in two tables is two rows.
func TestLandedKeysKeepTablesApart(t *testing.T) {
	if landedKey("tracks", "a") == landedKey("order_completed", "a") || landedKey("t", "ab") == landedKey("ta", "b") {
		t.Error("landed keys of different rows are equal")
	}
}
