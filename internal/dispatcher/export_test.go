package dispatcher

// Decodes returns how many request bodies this dispatcher decoded in
// admission (tests: a request's path decodes its body once).
func (d *Dispatcher) Decodes() int64 { return d.decodes.Load() }
