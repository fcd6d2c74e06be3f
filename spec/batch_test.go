package spec

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestDecodeBatchSDKPayloads(t *testing.T) {
	tests := []struct {
		file     string
		items    int
		writeKey string
		sentAt   string
		context  map[string]any
		types    []Type
	}{
		{
			file: "batch_go.json", items: 3, sentAt: "2026-11-26T09:48:51.202905006Z",
			context: map[string]any{"library": map[string]any{"name": "analytics-go", "version": "3.0.0"}},
			types:   []Type{TypeTrack, TypeIdentify, TypePage},
		},
		{
			file: "batch_node.json", items: 2, writeKey: "WK", sentAt: "2026-11-26T09:49:28.680Z",
			types: []Type{TypeTrack, TypeIdentify},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := DecodeBatch(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if len(b.Items) != tt.items {
				t.Fatalf("len(Items) = %d, want %d", len(b.Items), tt.items)
			}
			if b.WriteKey != tt.writeKey {
				t.Errorf("WriteKey = %q, want %q", b.WriteKey, tt.writeKey)
			}
			assertSameTime(t, "SentAt", b.SentAt, mustTime(tt.sentAt))
			if !reflect.DeepEqual(b.Context, tt.context) {
				t.Errorf("Context = %#v, want %#v", b.Context, tt.context)
			}
			received := mustTime("2026-11-26T09:50:00Z")
			for i, raw := range b.Items {
				e, err := Decode(raw, "")
				if err != nil {
					t.Fatalf("item %d: %v", i, err)
				}
				if e.Fields().Type != tt.types[i] {
					t.Errorf("item %d: type %q, want %q", i, e.Fields().Type, tt.types[i])
				}
				b.Merge(e)
				Enrich(e, received, "203.0.113.7")
				if err := e.Validate(); err != nil {
					t.Errorf("item %d: Validate: %v", i, err)
				}
				c := e.Fields()
				assertSameTime(t, "item sentAt", c.SentAt, b.SentAt)
				// The batch's sentAt drives the clock-skew correction, for
				// events sent within MaxSendDelay of their time.
				want := c.OriginalTimestamp
				if d := b.SentAt.Sub(c.OriginalTimestamp); d >= 0 && d <= MaxSendDelay {
					want = received.Add(-d)
				}
				assertSameTime(t, "item timestamp", c.Timestamp, want)
				lib, _ := c.Context["library"].(map[string]any)
				if lib["name"] == nil {
					t.Errorf("item %d: context.library missing after Merge: %v", i, c.Context)
				}
			}
		})
	}
}

func TestDecodeBatchEnvelope(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     []string // field/rule; nil for no error
		items    int
		writeKey string
	}{
		{"empty batch", `{"batch":[]}`, nil, 0, ""},
		{"items of any JSON kind", `{"batch":[{"type":"track"},1,null]}`, nil, 3, ""},
		{"writeKey read", `{"batch":[{}],"writeKey":"WK"}`, nil, 1, "WK"},
		{"missing batch", `{"writeKey":"WK"}`, []string{"batch/required"}, 0, "WK"},
		{"null batch", `{"batch":null,"writeKey":"WK"}`, []string{"batch/required"}, 0, "WK"},
		{"batch is an object", `{"batch":{"type":"track"},"writeKey":"WK"}`, []string{"batch/type"}, 0, "WK"},
		{"batch is a string", `{"batch":"[]","writeKey":"WK"}`, []string{"batch/type"}, 0, "WK"},
		{"writeKey is a number", `{"batch":[],"writeKey":12}`, []string{"writeKey/type"}, 0, ""},
		{"sentAt is not a time", `{"batch":[],"writeKey":"WK","sentAt":"now"}`, []string{"sentAt/format"}, 0, "WK"},
		{"sentAt is a number", `{"batch":[],"sentAt":1}`, []string{"sentAt/type"}, 0, ""},
		{"context is an array", `{"batch":[],"context":[]}`, []string{"context/type"}, 0, ""},
		{"integrations is a string", `{"batch":[],"integrations":"All"}`, []string{"integrations/type"}, 0, ""},
		{
			"everything wrong, writeKey still read",
			`{"batch":5,"writeKey":"WK","sentAt":true,"context":"c","integrations":[]}`,
			[]string{"batch/type", "context/type", "integrations/type", "sentAt/type"}, 0, "WK",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := DecodeBatch([]byte(tt.body))
			if b == nil {
				t.Fatalf("DecodeBatch returned no envelope (error %v)", err)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("DecodeBatch: %v", err)
				}
			} else {
				assertFieldRules(t, err, tt.want...)
			}
			if len(b.Items) != tt.items {
				t.Errorf("len(Items) = %d, want %d", len(b.Items), tt.items)
			}
			if b.WriteKey != tt.writeKey {
				t.Errorf("WriteKey = %q, want %q", b.WriteKey, tt.writeKey)
			}
		})
	}
}

func TestDecodeBatchItemsAreTheInputsBytes(t *testing.T) {
	data := []byte(` {"context":{"a":[1,{"b":"]}"}]},"batch": [ {"type":"identify","userId":"u\"}"} , 7, "s" ,[1,[2]]] , "writeKey":"k"} `)
	b, err := DecodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"type":"identify","userId":"u\"}"}`, `7`, `"s"`, `[1,[2]]`}
	if len(b.Items) != len(want) {
		t.Fatalf("items = %q, want %q", b.Items, want)
	}
	for i, w := range want {
		if string(b.Items[i]) != w {
			t.Errorf("item %d = %q, want %q", i, b.Items[i], w)
		}
	}
	if b.WriteKey != "k" || b.Context == nil {
		t.Errorf("envelope = %+v", b)
	}
	// The items are sub-slices of data, as documented: no copy is made.
	data[bytes.Index(data, []byte(`"type"`))+2] = 'T'
	if !bytes.Contains(b.Items[0], []byte(`"tTpe"`)) {
		t.Errorf("Items[0] = %q does not share the input's bytes", b.Items[0])
	}
}

func TestMerge(t *testing.T) {
	batchSent := mustTime("2024-01-02T03:04:10Z")
	ownSent := mustTime("2024-01-02T03:04:07+01:00")
	tests := []struct {
		name             string
		item             string
		batch            *Batch
		wantContext      map[string]any
		wantIntegrations map[string]any
		wantSentAt       time.Time
	}{
		{
			name: "item without context takes the batch's",
			item: `{"type":"identify","userId":"u"}`,
			batch: &Batch{
				SentAt:       batchSent,
				Context:      map[string]any{"library": map[string]any{"name": "analytics-go"}},
				Integrations: map[string]any{"All": false, "BigQuery": true},
			},
			wantContext:      map[string]any{"library": map[string]any{"name": "analytics-go"}},
			wantIntegrations: map[string]any{"All": false, "BigQuery": true},
			wantSentAt:       batchSent,
		},
		{
			name: "item wins key by key",
			item: `{"type":"identify","userId":"u","sentAt":"2024-01-02T03:04:07+01:00",
				"context":{"ip":"1.1.1.1","library":{"name":"own"}},
				"integrations":{"BigQuery":false,"Webhook":{"url":"x"}}}`,
			batch: &Batch{
				SentAt:       batchSent,
				Context:      map[string]any{"ip": "9.9.9.9", "locale": "en-US", "library": map[string]any{"name": "batch", "version": "1"}},
				Integrations: map[string]any{"All": false, "BigQuery": true},
			},
			// Merging is one level deep: the item's library replaces the
			// batch's whole.
			wantContext:      map[string]any{"ip": "1.1.1.1", "locale": "en-US", "library": map[string]any{"name": "own"}},
			wantIntegrations: map[string]any{"All": false, "BigQuery": false, "Webhook": map[string]any{"url": "x"}},
			wantSentAt:       ownSent,
		},
		{
			name:             "empty batch leaves the item alone",
			item:             `{"type":"identify","userId":"u","context":{"ip":"1.1.1.1"}}`,
			batch:            &Batch{},
			wantContext:      map[string]any{"ip": "1.1.1.1"},
			wantIntegrations: nil,
			wantSentAt:       time.Time{},
		},
		{
			name:             "empty batch maps and an item without any",
			item:             `{"type":"identify","userId":"u"}`,
			batch:            &Batch{Context: map[string]any{}, Integrations: map[string]any{}},
			wantContext:      nil,
			wantIntegrations: nil,
			wantSentAt:       time.Time{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustDecode(t, tt.item, "")
			tt.batch.Merge(e)
			c := e.Fields()
			if !reflect.DeepEqual(c.Context, tt.wantContext) {
				t.Errorf("context = %#v, want %#v", c.Context, tt.wantContext)
			}
			if !reflect.DeepEqual(c.Integrations, tt.wantIntegrations) {
				t.Errorf("integrations = %#v, want %#v", c.Integrations, tt.wantIntegrations)
			}
			assertSameTime(t, "sentAt", c.SentAt, tt.wantSentAt)
			// Merging twice changes nothing.
			tt.batch.Merge(e)
			if !reflect.DeepEqual(c.Context, tt.wantContext) || !reflect.DeepEqual(c.Integrations, tt.wantIntegrations) {
				t.Errorf("a second Merge changed the event: %v %v", c.Context, c.Integrations)
			}
		})
	}
}

// TestMergeDoesNotMutateBatch checks that the batch-level maps, shared by
// the items that inherit them, are left as they were by Merge and by Enrich
// adding context.ip, that one item's ip does not reach another item, and
// that items without maps of their own share the batch's.
func TestMergeDoesNotMutateBatch(t *testing.T) {
	body := `{"batch":[
		{"type":"track","userId":"u1","event":"A"},
		{"type":"track","userId":"u2","event":"B","context":{"locale":"de-DE"}},
		{"type":"track","userId":"u3","event":"C","integrations":{"BigQuery":false}},
		{"type":"track","userId":"u4","event":"D","context":{"ip":"10.0.0.4"}},
		{"type":"track","userId":"u5","event":"E","context":{}}
	],
	"context":{"library":{"name":"analytics-go","version":"3.0.0"},"locale":"en-US"},
	"integrations":{"All":true,"BigQuery":true}}`
	b, err := DecodeBatch([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		s, err := json.Marshal([]any{b.Context, b.Integrations})
		if err != nil {
			t.Fatal(err)
		}
		return string(s)
	}
	before := snapshot()

	received := time.Now()
	var events []Event
	for i, raw := range b.Items {
		e, err := Decode(raw, "")
		if err != nil {
			t.Fatal(err)
		}
		b.Merge(e)
		// A distinct ip per item shows whether items share a context map.
		Enrich(e, received, "192.0.2."+string(rune('1'+i)))
		events = append(events, e)
	}

	if after := snapshot(); after != before {
		t.Errorf("batch-level maps changed:\nbefore %s\nafter  %s", before, after)
	}
	if _, ok := b.Context["ip"]; ok {
		t.Errorf("Enrich set ip on the batch-level context: %v", b.Context)
	}
	wantIP := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "10.0.0.4", "192.0.2.5"}
	wantLocale := []string{"en-US", "de-DE", "en-US", "en-US", "en-US"}
	wantBigQuery := []bool{true, true, false, true, true}
	for i, e := range events {
		c := e.Fields()
		if c.Context["ip"] != wantIP[i] {
			t.Errorf("item %d: context.ip = %v, want %s", i, c.Context["ip"], wantIP[i])
		}
		if c.Context["locale"] != wantLocale[i] {
			t.Errorf("item %d: context.locale = %v, want %s", i, c.Context["locale"], wantLocale[i])
		}
		if c.Integrations["BigQuery"] != wantBigQuery[i] {
			t.Errorf("item %d: integrations = %v", i, c.Integrations)
		}
	}
	// Items without integrations of their own hold the batch's map itself.
	for _, i := range []int{0, 1, 3, 4} {
		if !sameMap(events[i].Fields().Integrations, b.Integrations) {
			t.Errorf("item %d: integrations are a copy, want the batch's map shared", i)
		}
	}
	if sameMap(events[2].Fields().Integrations, b.Integrations) {
		t.Errorf("item 2 has integrations of its own, yet holds the batch's map")
	}
}

// TestEnrichSharesOneCopyPerBatch checks that the items that share the
// batch-level context share, after Enrich, one copy of it holding the ip,
// and that neither the batch's map nor an item's own is given to another.
func TestEnrichSharesOneCopyPerBatch(t *testing.T) {
	b, err := DecodeBatch([]byte(`{"batch":[
		{"type":"track","userId":"u1","event":"A"},
		{"type":"track","userId":"u2","event":"B","context":{"ip":null}},
		{"type":"track","userId":"u3","event":"C","context":{"ip":"10.0.0.3"}},
		{"type":"track","userId":"u4","event":"D"},
		{"type":"track","userId":"u5","event":"E"}],
		"context":{"locale":"en-US"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for i, raw := range b.Items {
		e := mustDecode(t, string(raw), "")
		b.Merge(e)
		ip := "203.0.113.9"
		if i == 4 {
			ip = "198.51.100.5" // another address: another copy
		}
		Enrich(e, time.Now(), ip)
		events = append(events, e)
	}
	if len(b.Context) != 1 || b.Context["ip"] != nil {
		t.Errorf("batch context = %v, want it untouched", b.Context)
	}
	ctx := func(i int) map[string]any { return events[i].Fields().Context }
	for i, want := range []string{"203.0.113.9", "203.0.113.9", "10.0.0.3", "203.0.113.9", "198.51.100.5"} {
		if got := ctx(i)["ip"]; got != want {
			t.Errorf("item %d: context.ip = %v, want %s", i, got, want)
		}
		if got := ctx(i)["locale"]; got != "en-US" {
			t.Errorf("item %d: context.locale = %v, want the batch's", i, got)
		}
	}
	if !sameMap(ctx(0), ctx(3)) {
		t.Error("items 0 and 3 inherit the same context and ip, yet hold two copies")
	}
	if sameMap(ctx(0), b.Context) || sameMap(ctx(0), ctx(1)) || sameMap(ctx(0), ctx(4)) {
		t.Error("an item holding the batch's context with its ip shares it with the batch, an item of its own, or another ip")
	}
	// Enriching again changes nothing.
	Enrich(events[0], time.Now(), "192.0.2.99")
	if ctx(0)["ip"] != "203.0.113.9" || ctx(3)["ip"] != "203.0.113.9" {
		t.Errorf("a second Enrich changed context.ip: %v, %v", ctx(0), ctx(3))
	}
}

// TestMergeConcurrently merges and enriches the events of one batch from
// several goroutines; run with -race.
func TestMergeConcurrently(t *testing.T) {
	b, err := DecodeBatch([]byte(`{"batch":[` + repeat(64, func(i int) string {
		if i%2 == 0 {
			return `{"type":"track","userId":"u","event":"E"}`
		}
		return `{"type":"track","userId":"u","event":"E","context":{"own":1}}`
	}) + `],"context":{"locale":"en-US","library":{"name":"x"}},"integrations":{"All":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	events := make([]Event, len(b.Items))
	var wg sync.WaitGroup
	for i, raw := range b.Items {
		wg.Go(func() {
			e, err := Decode(raw, "")
			if err != nil {
				t.Error(err)
				return
			}
			_ = b.MergedSize(e)
			b.Merge(e)
			Enrich(e, time.Now(), "203.0.113.7")
			events[i] = e
		})
	}
	wg.Wait()
	for i, e := range events {
		if c := e.Fields().Context; c["ip"] != "203.0.113.7" || c["locale"] != "en-US" {
			t.Errorf("item %d: context %v", i, c)
		}
	}
	if _, ok := b.Context["ip"]; ok {
		t.Errorf("batch context written: %v", b.Context)
	}
}
