package opentrack_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// A custom integration that treats every event alike is one function.
func Example_customIntegration() {
	printer := opentrack.Func("Printer", func(ctx context.Context, e spec.Event) error {
		if t, ok := e.(*spec.Track); ok {
			fmt.Printf("%s did %q\n", t.UserID, t.Event)
		}
		return nil
	})
	m, _ := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{printer}})
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, nil)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res, _ := http.Post(srv.URL+"/v1/track", "application/json",
		strings.NewReader(`{"userId":"u1","event":"Signed Up"}`))
	_ = m.Shutdown(context.Background()) // delivers before it returns
	fmt.Println(res.Status)
	// Output:
	// u1 did "Signed Up"
	// 200 OK
}

// Shutdown delivers everything accepted before it returns.
func ExampleManager_Shutdown() {
	var delivered int
	count := opentrack.Func("Counter", func(context.Context, spec.Event) error {
		delivered++ // one worker below, so no lock is needed
		return nil
	})
	m, _ := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{count},
		Delivery:     opentrack.Delivery{Workers: 1},
	})
	for i := range 100 {
		e := &spec.Track{Common: spec.Common{Type: spec.TypeTrack, UserID: "u1", MessageID: fmt.Sprint(i)}, Event: "Clicked"}
		_ = m.Enqueue(context.Background(), e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		fmt.Println(err)
	}
	fmt.Println(delivered, "delivered")
	fmt.Println(m.Enqueue(context.Background(), &spec.Track{}))
	// Output:
	// 100 delivered
	// opentrack: closed
}
