package spec

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/invopop/validation"
)

// FieldError is one broken rule.
type FieldError struct {
	// Field is the JSON name of the field, with dots for nesting
	// ("context.ip"); for a batch item, the handler prefixes nothing and
	// reports the item's index separately.
	Field string `json:"field"`
	// Rule names the rule that failed: "required", "type", "format",
	// "length", "identity", "in", "size" (a batch item over the size
	// limit), or "invalid" for a rule without a name.
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
)

func maxLen(n int) validation.Rule {
	return validation.RuneLength(0, n).ErrorObject(errLength.SetParams(map[string]any{"max": n}))
}

// The rules are built once; they hold no state.
var (
	idLength         = maxLen(MaxIDLength)
	eventNameLength  = maxLen(MaxEventNameLength)
	identityRequired = validation.Required.ErrorObject(errIdentity)
)

// commonErrors checks the shared fields: messageId's length and, when
// needIdentity, userId or anonymousId. Fields are checked one by one with
// validation.Validate, which needs no reflection over the struct, and
// gathered in validation.Errors keyed by their JSON names.
func (c *Common) commonErrors(needIdentity bool) validation.Errors {
	noID := needIdentity && c.UserID == "" && c.AnonymousID == ""
	return validation.Errors{
		"messageId":   validation.Validate(c.MessageID, idLength),
		"userId":      validation.Validate(c.UserID, validation.When(noID, identityRequired), idLength),
		"anonymousId": validation.Validate(c.AnonymousID, validation.When(noID, identityRequired), idLength),
	}
}

// Validate checks the track rules: userId or anonymousId, and an event name
// of 1 to MaxEventNameLength characters.
func (t *Track) Validate() error {
	errs := t.commonErrors(true)
	errs["event"] = validation.Validate(t.Event, validation.Required, eventNameLength)
	return finish(errs.Filter())
}

// Validate checks the identify rules: userId or anonymousId.
func (i *Identify) Validate() error {
	return finish(i.commonErrors(true).Filter())
}

// Validate checks the page rules: userId or anonymousId.
func (p *Page) Validate() error {
	return finish(p.commonErrors(true).Filter())
}

// Validate checks the screen rules: userId or anonymousId.
func (s *Screen) Validate() error {
	return finish(s.commonErrors(true).Filter())
}

// Validate checks the group rules: userId or anonymousId, and a groupId.
func (g *Group) Validate() error {
	errs := g.commonErrors(true)
	errs["groupId"] = validation.Validate(g.GroupID, validation.Required, idLength)
	return finish(errs.Filter())
}

// Validate checks the alias rules: userId and previousId.
func (a *Alias) Validate() error {
	errs := a.commonErrors(false)
	errs["userId"] = validation.Validate(a.UserID, validation.Required, idLength)
	errs["previousId"] = validation.Validate(a.PreviousID, validation.Required, idLength)
	return finish(errs.Filter())
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
