package spec

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/invopop/validation"
)

// FieldError is one broken rule.
type FieldError struct {
	// Field is the JSON name of the field, with dots for nesting and [i]
	// for an array element ("context.ip", "properties.products[2].sku"),
	// cut to 200 bytes; for a batch item, the handler prefixes nothing and
	// reports the item's index separately.
	Field string `json:"field"`
	// Rule names the rule that failed: "required", "type", "format",
	// "length", "identity", "in", "utf8" (text that is not UTF-8, or an id
	// holding U+FFFD), "control" (an id holding a control character),
	// "depth" (nested deeper than MaxDepth), "size" (a batch item over the
	// size limit), or "invalid" for a rule without a name.
	Rule string `json:"rule"`
	// Message says what the rule expects, in English.
	Message string `json:"message"`
}

// ValidationError lists every rule an event broke. It is returned by
// [Decode] for fields of the wrong JSON type and by each event's Validate
// method for the call's rules.
type ValidationError struct {
	Fields []FieldError `json:"fields"`
}

// Error implements error.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("spec: invalid event: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s (%s)", f.Field, f.Message, f.Rule)
	}
	return b.String()
}

func (e *ValidationError) sort() {
	slices.SortFunc(e.Fields, func(a, b FieldError) int {
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(a.Rule, b.Rule)
	})
}

var (
	errIdentity = validation.NewError("identity", "userId or anonymousId is required")
	errLength   = validation.NewError("length", "must be at most {{.max}} characters")
	errUTF8     = validation.NewError("utf8", "must be valid UTF-8 text, without U+FFFD (an invalid byte or a lone surrogate decodes to it)")
	errControl  = validation.NewError("control", "must not hold control characters (U+0000 to U+001F, U+007F)")
)

// idText is the rule for an id's text. It refuses U+FFFD and invalid UTF-8
// (rule "utf8"): encoding/json decodes an invalid byte and a lone surrogate
// escape alike as U+FFFD, so two different ids sent that way would become
// one user. It refuses control characters (rule "control"): they are
// invisible wherever the id is shown, and no SDK generates them. It reads
// the string without reflection, unlike the library's StringRule.
type idText struct{}

// Validate implements validation.Rule.
func (idText) Validate(value any) error {
	s, _ := value.(string)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return errControl
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError {
			return errUTF8
		}
		i += size
	}
	return nil
}

func maxLen(n int) validation.Rule {
	return validation.RuneLength(0, n).ErrorObject(errLength.SetParams(map[string]any{"max": n}))
}

// The rules are built once; they hold no state.
var (
	idLength         = maxLen(MaxIDLength)
	eventNameLength  = maxLen(MaxEventNameLength)
	identityRequired = validation.Required.ErrorObject(errIdentity)
)

// checks gathers the errors of rules checked one by one with
// validation.Validate, keyed by the fields' JSON names. Checking field by
// field needs no reflection over the struct, and the map is made only when
// a rule fails, so a valid event costs no allocation here.
type checks struct {
	errs validation.Errors
}

func (c *checks) field(name string, value string, rules ...validation.Rule) {
	if err := validation.Validate(value, rules...); err != nil {
		if c.errs == nil {
			c.errs = validation.Errors{}
		}
		c.errs[name] = err
	}
}

func (c *checks) result() error {
	if c.errs == nil {
		return nil
	}
	return finish(c.errs)
}

// The rule lists are built once; rules hold no state.
var (
	idRules         = []validation.Rule{idText{}, idLength}
	requiredIDRules = []validation.Rule{validation.Required, idText{}, idLength}
	identityRules   = []validation.Rule{identityRequired}
	eventNameRules  = []validation.Rule{validation.Required, eventNameLength}
)

// common checks the shared fields: each id's text and length and, when
// needIdentity, userId or anonymousId.
func (c *Common) common(ck *checks, needIdentity bool) {
	ck.field("messageId", c.MessageID, idRules...)
	if needIdentity && c.UserID == "" && c.AnonymousID == "" {
		ck.field("userId", c.UserID, identityRules...)
		ck.field("anonymousId", c.AnonymousID, identityRules...)
		return
	}
	ck.field("userId", c.UserID, idRules...)
	ck.field("anonymousId", c.AnonymousID, idRules...)
}

// Validate checks the track rules: userId or anonymousId, and an event name
// of 1 to MaxEventNameLength characters.
func (t *Track) Validate() error {
	var ck checks
	t.common(&ck, true)
	ck.field("event", t.Event, eventNameRules...)
	return ck.result()
}

// Validate checks the identify rules: userId or anonymousId.
func (i *Identify) Validate() error {
	var ck checks
	i.common(&ck, true)
	return ck.result()
}

// Validate checks the page rules: userId or anonymousId.
func (p *Page) Validate() error {
	var ck checks
	p.common(&ck, true)
	return ck.result()
}

// Validate checks the screen rules: userId or anonymousId.
func (s *Screen) Validate() error {
	var ck checks
	s.common(&ck, true)
	return ck.result()
}

// Validate checks the group rules: userId or anonymousId, and a groupId.
func (g *Group) Validate() error {
	var ck checks
	g.common(&ck, true)
	ck.field("groupId", g.GroupID, requiredIDRules...)
	return ck.result()
}

// Validate checks the alias rules: userId and previousId.
func (a *Alias) Validate() error {
	var ck checks
	ck.field("messageId", a.MessageID, idRules...)
	ck.field("userId", a.UserID, requiredIDRules...)
	ck.field("anonymousId", a.AnonymousID, idRules...)
	ck.field("previousId", a.PreviousID, requiredIDRules...)
	return ck.result()
}

// finish turns the errors of invopop/validation into a *ValidationError
// whose entries name the field and the rule.
func finish(err error) error {
	if err == nil {
		return nil
	}
	var errs validation.Errors
	if !errors.As(err, &errs) {
		// An InternalError is a bug in the rules above, not bad input.
		return fmt.Errorf("spec: validating: %w", err)
	}
	ve := &ValidationError{}
	flatten("", errs, ve)
	ve.sort()
	return ve
}

func flatten(prefix string, errs validation.Errors, ve *ValidationError) {
	for k, err := range errs {
		if err == nil {
			continue
		}
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		var nested validation.Errors
		if errors.As(err, &nested) {
			flatten(name, nested, ve)
			continue
		}
		rule := "invalid"
		var ve2 validation.Error
		if errors.As(err, &ve2) {
			rule = strings.TrimPrefix(ve2.Code(), "validation_")
		}
		ve.Fields = append(ve.Fields, FieldError{Field: name, Rule: rule, Message: err.Error()})
	}
}
