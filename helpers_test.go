package opentrack_test

import (
	"errors"
	"log/slog"

	"github.com/opentrackhq/opentrack/internal/testkit"
	"github.com/opentrackhq/opentrack/spec"
)

type (
	recorder = testkit.Recorder
	failures = testkit.Failures
)

var (
	newRecorder = testkit.NewRecorder
	fastRetry   = testkit.FastRetry
	newManager  = testkit.NewManager
	flush       = testkit.Flush
	statsOf     = testkit.StatsOf
)

func quietLogger() *slog.Logger { return testkit.Quiet }

func track(id string) *spec.Track {
	return &spec.Track{Common: spec.Common{Type: spec.TypeTrack, MessageID: id, UserID: "u1"}, Event: "Clicked"}
}

// trackBy is a track of the given user: a non-batch integration delivers one
// user's events one at a time, different users' in parallel.
func trackBy(user, id string) *spec.Track {
	e := track(id)
	e.UserID = user
	return e
}

var errTransient = errors.New("transient")
