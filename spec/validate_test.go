package spec

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	common := func(userID, anonymousID, messageID string) Common {
		return Common{UserID: userID, AnonymousID: anonymousID, MessageID: messageID}
	}
	tests := []struct {
		name  string
		event Event
		want  []string // field/rule; nil for valid
	}{
		// Identity.
		{"track with userId", &Track{Common: common("u", "", ""), Event: "E"}, nil},
		{"track with anonymousId", &Track{Common: common("", "a", ""), Event: "E"}, nil},
		{"track with both ids", &Track{Common: common("u", "a", ""), Event: "E"}, nil},
		{"track with neither id", &Track{Common: common("", "", "m"), Event: "E"}, []string{"anonymousId/identity", "userId/identity"}},
		{"identify with neither id", &Identify{}, []string{"anonymousId/identity", "userId/identity"}},
		{"identify with anonymousId", &Identify{Common: common("", "a", "")}, nil},
		{"page with neither id", &Page{Name: "Home"}, []string{"anonymousId/identity", "userId/identity"}},
		{"page with userId and nothing else", &Page{Common: common("u", "", "")}, nil},
		{"screen with neither id", &Screen{Name: "Home"}, []string{"anonymousId/identity", "userId/identity"}},
		{"screen with anonymousId", &Screen{Common: common("", "a", "")}, nil},
		{"group with neither id", &Group{GroupID: "g"}, []string{"anonymousId/identity", "userId/identity"}},

		// Alias: userId and previousId; anonymousId is neither needed nor enough.
		{"alias with userId and previousId", &Alias{Common: common("u", "", ""), PreviousID: "p"}, nil},
		{"alias with anonymousId only", &Alias{Common: common("", "a", ""), PreviousID: "p"}, []string{"userId/required"}},
		{"alias without previousId", &Alias{Common: common("u", "", "")}, []string{"previousId/required"}},
		{"empty alias", &Alias{}, []string{"previousId/required", "userId/required"}},
		{"alias previousId 255", &Alias{Common: common("u", "", ""), PreviousID: long(255)}, nil},
		{"alias previousId 256", &Alias{Common: common("u", "", ""), PreviousID: long(256)}, []string{"previousId/length"}},
		{"alias userId 256", &Alias{Common: common(long(256), "", ""), PreviousID: "p"}, []string{"userId/length"}},

		// Track event name.
		{"track without event", &Track{Common: common("u", "", "")}, []string{"event/required"}},
		{"track event 200 runes", &Track{Common: common("u", "", ""), Event: long(200)}, nil},
		{"track event 201 runes", &Track{Common: common("u", "", ""), Event: long(201)}, []string{"event/length"}},
		{"track event 200 two-byte runes", &Track{Common: common("u", "", ""), Event: strings.Repeat("é", 200)}, nil},
		{"track event 200 four-byte runes", &Track{Common: common("u", "", ""), Event: strings.Repeat("🎉", 200)}, nil},
		{"track event 201 three-byte runes", &Track{Common: common("u", "", ""), Event: strings.Repeat("€", 201)}, []string{"event/length"}},
		{"track without event or ids", &Track{}, []string{"anonymousId/identity", "event/required", "userId/identity"}},

		// Group id.
		{"group with groupId", &Group{Common: common("u", "", ""), GroupID: "g"}, nil},
		{"group without groupId", &Group{Common: common("u", "", "")}, []string{"groupId/required"}},
		{"group groupId 255", &Group{Common: common("u", "", ""), GroupID: long(255)}, nil},
		{"group groupId 256", &Group{Common: common("u", "", ""), GroupID: long(256)}, []string{"groupId/length"}},

		// Id lengths, in runes.
		{"userId 255", &Identify{Common: common(long(255), "", "")}, nil},
		{"userId 256", &Identify{Common: common(long(256), "", "")}, []string{"userId/length"}},
		{"userId 255 multi-byte runes", &Identify{Common: common(strings.Repeat("ü", 255), "", "")}, nil},
		{"userId 256 multi-byte runes", &Identify{Common: common(strings.Repeat("ü", 256), "", "")}, []string{"userId/length"}},
		{"anonymousId 255", &Page{Common: common("", long(255), "")}, nil},
		{"anonymousId 256", &Page{Common: common("", long(256), "")}, []string{"anonymousId/length"}},
		{"anonymousId 256 with a valid userId", &Screen{Common: common("u", long(256), "")}, []string{"anonymousId/length"}},
		{"messageId 255", &Identify{Common: common("u", "", long(255))}, nil},
		{"messageId 256", &Identify{Common: common("u", "", long(256))}, []string{"messageId/length"}},
		{"messageId 256 on alias", &Alias{Common: common("u", "", long(256)), PreviousID: "p"}, []string{"messageId/length"}},
		{
			"everything too long on a track",
			&Track{Common: common(long(256), long(256), long(256)), Event: long(201)},
			[]string{"anonymousId/length", "event/length", "messageId/length", "userId/length"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.event.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate: %v, want nil", err)
				}
				return
			}
			assertFieldRules(t, err, tt.want...)
		})
	}
}

func TestValidateMessages(t *testing.T) {
	err := (&Track{Common: Common{MessageID: strings.Repeat("m", 256)}, Event: strings.Repeat("e", 201)}).Validate()
	ve := validationError(t, err)
	want := map[string]FieldError{
		"anonymousId": {Field: "anonymousId", Rule: "identity", Message: "userId or anonymousId is required"},
		"event":       {Field: "event", Rule: "length", Message: "must be at most 200 characters"},
		"messageId":   {Field: "messageId", Rule: "length", Message: "must be at most 255 characters"},
		"userId":      {Field: "userId", Rule: "identity", Message: "userId or anonymousId is required"},
	}
	if len(ve.Fields) != len(want) {
		t.Fatalf("Fields = %+v, want %d entries", ve.Fields, len(want))
	}
	for _, f := range ve.Fields {
		if f != want[f.Field] {
			t.Errorf("got %+v, want %+v", f, want[f.Field])
		}
	}
	required := (&Group{Common: Common{UserID: "u"}}).Validate()
	if ve := validationError(t, required); ve.Fields[0] != (FieldError{Field: "groupId", Rule: "required", Message: "cannot be blank"}) {
		t.Errorf("group without groupId: %+v", ve.Fields)
	}

	// The error string lists every field; the JSON form is what an HTTP
	// handler can send back.
	s := err.Error()
	for _, part := range []string{"anonymousId: ", "event: must be at most 200 characters (length)", "messageId: ", "userId: "} {
		if !strings.Contains(s, part) {
			t.Errorf("Error() = %q, lacks %q", s, part)
		}
	}
	b, jerr := json.Marshal(ve)
	if jerr != nil {
		t.Fatal(jerr)
	}
	var round struct {
		Fields []FieldError `json:"fields"`
	}
	if err := json.Unmarshal(b, &round); err != nil || len(round.Fields) != 4 || round.Fields[1].Rule != "length" {
		t.Errorf("JSON form %s (%v)", b, err)
	}
	if !strings.Contains(string(b), `"field":"event","rule":"length"`) {
		t.Errorf("JSON form %s does not use the documented keys", b)
	}
}

// TestValidateDecoded checks the rules on decoded events, where the ids may
// have arrived as numbers.
func TestValidateDecoded(t *testing.T) {
	tests := []struct {
		body string
		want []string
	}{
		{`{"type":"track","userId":12345,"event":"E"}`, nil},
		{`{"type":"track","userId":null,"anonymousId":null,"event":"E"}`, []string{"anonymousId/identity", "userId/identity"}},
		{`{"type":"track","userId":"","anonymousId":"","event":""}`, []string{"anonymousId/identity", "event/required", "userId/identity"}},
		{`{"type":"alias","userId":1,"previousId":2}`, nil},
		{`{"type":"alias","anonymousId":"a","previousId":"p"}`, []string{"userId/required"}},
		{`{"type":"group","anonymousId":"a","groupId":9007199254740993}`, nil},
		{`{"type":"group","anonymousId":"a","groupId":""}`, []string{"groupId/required"}},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			err := mustDecode(t, tt.body, "").Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			assertFieldRules(t, err, tt.want...)
		})
	}
}
