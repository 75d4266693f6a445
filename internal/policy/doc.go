// Package policy holds the optimizer's decisions as pure code: measurements
// and the current settings go in, a Decision comes out with the new
// setting, a one-sentence reason and the numbers behind it, ready to be
// written to herd_control and announced on herd.events.>. Nothing here does
// I/O or reads the clock: the caller passes the time.
//
// The decisions:
//   - Budgeter moves slots (CPU budget) between models by demand, within
//     per-model bounds and the total, with hysteresis so it does not flap;
//     Scaler recommends a number of worker instances for an external
//     autoscaler.
//   - ContextSizer chooses one num_ctx per model from observed prompt sizes
//     and truncations, raising promptly and lowering slowly, since every
//     change reloads the model.
//   - KeepAlive, Preload and Unload keep the right models warm.
//   - SelectModel resolves "model": "auto" from agent profiles and load.
//
// The stateful policies (Budgeter, Scaler, ContextSizer) are not safe for
// concurrent use; the optimizer evaluates them from one goroutine.
package policy
