//go:build race

package replay

// raceEnabled is true when the race detector slows every step down, so
// that timing bounds cannot be asserted.
const raceEnabled = true
