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
	// "length", "identity", "in".
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

// identity returns the rules for userId and anonymousId: at least one of them,
// each no longer than MaxIDLength.
func (c *Common) rules(needIdentity bool) []*validation.FieldRules {
	noID := needIdentity && c.UserID == "" && c.AnonymousID == ""
	return []*validation.FieldRules{
		validation.Field(&c.MessageID, maxLen(MaxIDLength)),
		validation.Field(&c.UserID, validation.When(noID, validation.Required.ErrorObject(errIdentity)), maxLen(MaxIDLength)),
		validation.Field(&c.AnonymousID, validation.When(noID, validation.Required.ErrorObject(errIdentity)), maxLen(MaxIDLength)),
	}
}

// Validate checks the track rules: userId or anonymousId, and an event name
// of 1 to MaxEventNameLength characters.
func (t *Track) Validate() error {
	return finish(validation.ValidateStruct(t, append(t.rules(true),
		validation.Field(&t.Event, validation.Required, maxLen(MaxEventNameLength)),
	)...))
}

// Validate checks the identify rules: userId or anonymousId.
func (i *Identify) Validate() error {
	return finish(validation.ValidateStruct(i, i.rules(true)...))
}

// Validate checks the page rules: userId or anonymousId.
func (p *Page) Validate() error {
	return finish(validation.ValidateStruct(p, p.rules(true)...))
}

// Validate checks the screen rules: userId or anonymousId.
func (s *Screen) Validate() error {
	return finish(validation.ValidateStruct(s, s.rules(true)...))
}

// Validate checks the group rules: userId or anonymousId, and a groupId.
func (g *Group) Validate() error {
	return finish(validation.ValidateStruct(g, append(g.rules(true),
		validation.Field(&g.GroupID, validation.Required, maxLen(MaxIDLength)),
	)...))
}

// Validate checks the alias rules: userId and previousId.
func (a *Alias) Validate() error {
	return finish(validation.ValidateStruct(a, append(a.rules(false),
		validation.Field(&a.UserID, validation.Required),
		validation.Field(&a.PreviousID, validation.Required, maxLen(MaxIDLength)),
	)...))
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
