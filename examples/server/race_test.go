//go:build race

package main

// raceEnabled is true under the race detector, which multiplies a
// process's memory: bounds on RSS are not checked then.
const raceEnabled = true
