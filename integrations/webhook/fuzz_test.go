package webhook

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzParseHeaders: WEBHOOK_HEADERS never panics the parser, and what it
// accepts is canonical, one value per name, and reads back the same when
// written out again as JSON.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"Authorization":"Bearer a, b; c"}`, `{"x-a":"1","X-B":"\u00e9"}`,
		`{"A":"1","a":"2"}`, `{"A":1}`, `{"A":"1"} x`, `[`, `{"":""}`, `{"A":"\r\n"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHeaders(s)
		if err != nil {
			if h != nil {
				t.Fatalf("%q: headers %v returned with error %v", s, h, err)
			}
			return
		}
		m := map[string]string{}
		for k, v := range h {
			if k != http.CanonicalHeaderKey(k) || len(v) != 1 {
				t.Fatalf("%q: %q = %q, want a canonical name with one value", s, k, v)
			}
			m[k] = v[0]
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseHeaders(string(b))
		if err != nil || fmtHeader(again) != fmtHeader(h) {
			t.Fatalf("%q: read back %s as %v, %v; want %v", s, b, again, err, h)
		}
	})
}
