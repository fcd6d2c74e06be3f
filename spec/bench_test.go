package spec

import "testing"

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
