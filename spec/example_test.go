package spec_test

import (
	"fmt"
	"os"

	"github.com/opentrackhq/opentrack/spec"
)

// An integration that writes JSON lines gathers the events of a batch into
// one buffer with AppendJSON.
func ExampleAppendJSON() {
	var lines []byte
	for _, body := range []string{
		`{"type":"track","userId":"u1","event":"Signed Up"}`,
		`{"type":"identify","userId":"u1","traits":{"plan":"pro"}}`,
	} {
		e, err := spec.Decode([]byte(body), "")
		if err != nil {
			fmt.Println(err)
			return
		}
		if lines, err = spec.AppendJSON(lines, e); err != nil {
			fmt.Println(err)
			return
		}
		lines = append(lines, '\n')
	}
	os.Stdout.Write(lines)
	// Output:
	// {"type":"track","userId":"u1","event":"Signed Up"}
	// {"type":"identify","userId":"u1","traits":{"plan":"pro"}}
}

// A queue that stores each event's JSON after a header of its own writes
// the JSON in place with AppendWithJSON, passing the header with no room
// left so that each record gets an array of its own. The copy it returns
// writes the stored bytes rather than encoding the event again.
func ExampleAppendWithJSON() {
	e, err := spec.Decode([]byte(`{"type":"track","userId":"u1","event":"Signed Up"}`), "")
	if err != nil {
		fmt.Println(err)
		return
	}
	header := []byte("record-1 ")
	kept, record, err := spec.AppendWithJSON(header[:len(header):len(header)], e)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s\n", record)
	b, _ := kept.MarshalJSON() // the bytes after the header, not a new encoding
	fmt.Printf("%s\n", b)
	// Output:
	// record-1 {"type":"track","userId":"u1","event":"Signed Up"}
	// {"type":"track","userId":"u1","event":"Signed Up"}
}
