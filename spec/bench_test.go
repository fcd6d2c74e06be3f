package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// benchTrack is an analytics.js track call of about 600 bytes.
const benchTrack = `{"timestamp":"2024-05-14T09:21:04.912Z","event":"Product Viewed","type":"track","properties":{"product_id":"507f1f77bcf86cd799439011","price":18.99},"context":{"page":{"path":"/products/42","referrer":"","title":"Monopoly","url":"https://shop.example.com/products/42"},"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Chrome/124.0.0.0 Safari/537.36","locale":"en-US","library":{"name":"analytics.js","version":"npm:next-1.70.0"}},"messageId":"ajs-next-1715678464912-4f1e","anonymousId":"5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f","sentAt":"2024-05-14T09:21:04.920Z","_metadata":{"bundled":["Segment.io"]}}`

func TestBenchTrackIsRealistic(t *testing.T) {
	if n := len(benchTrack); n < 570 || n > 630 {
		t.Errorf("benchTrack is %d bytes, want about 600", n)
	}
	e := mustDecode(t, benchTrack, "")
	if err := e.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func BenchmarkDecodeTrack(b *testing.B) {
	data := []byte(benchTrack)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateTrack(b *testing.B) {
	e, err := Decode([]byte(benchTrack), "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalTrack(b *testing.B) {
	e, err := Decode([]byte(benchTrack), "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLarge is a track call of about 30 KB: an order of 120 products.
func benchLarge() string {
	var b strings.Builder
	b.WriteString(`{"type":"track","event":"Order Completed","userId":"97980cfea0067","messageId":"m-1","timestamp":"2024-05-14T09:21:04.912Z",`)
	b.WriteString(`"context":{"library":{"name":"analytics-node","version":"2.1.0"},"ip":"203.0.113.7","locale":"en-US"},"properties":{"order_id":"50314b8e9bcf000000000000","total":27.5,"currency":"USD","products":[`)
	for i := range 120 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"product_id":"507f1f77bcf86cd7994390%02d","sku":"45790-%03d","name":"Monopoly: %d<sup>rd</sup> Edition","price":%d.99,"quantity":%d,"category":"Games","url":"https://www.example.com/product/path","image_url":"https://www.example.com/product/path.jpg"}`, i%100, i, i, i%50, 1+i%3)
	}
	b.WriteString(`]}}`)
	return b.String()
}

// BenchmarkMarshal compares MarshalJSON with encoding/json writing the
// same event held as a map, for a browser track call of about 600 bytes
// and an order of about 30 KB. The figures are in encode.go's comment.
func BenchmarkMarshal(b *testing.B) {
	for _, in := range []struct{ name, body string }{{"track600B", benchTrack}, {"order30KB", benchLarge()}} {
		e, err := Decode([]byte(in.body), "")
		if err != nil {
			b.Fatal(err)
		}
		out, err := e.MarshalJSON()
		if err != nil {
			b.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			b.Fatal(err)
		}
		b.Run(in.name+"/spec", func(b *testing.B) {
			b.SetBytes(int64(len(out)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.MarshalJSON(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/encoding-json-map", func(b *testing.B) {
			b.SetBytes(int64(len(out)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMarshalTrackKept is MarshalJSON of an event that keeps its JSON
// (WithJSON): a copy of the bytes.
func BenchmarkMarshalTrackKept(b *testing.B) {
	e, err := Decode([]byte(benchTrack), "")
	if err != nil {
		b.Fatal(err)
	}
	if e, _, err = WithJSON(e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}
