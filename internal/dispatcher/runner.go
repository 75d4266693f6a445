package dispatcher

import (
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// Runner returns the policy for what agents may not set: the runner
// options (RunnerOptions) and the num_predict caps (MaxPredict,
// ModelMaxPredict). Workers apply the same policy (worker.Config.Runner).
func (c Config) Runner() request.Runner {
	return request.Runner{Mode: c.RunnerOptions, MaxPredict: c.ModelMaxPredict, DefaultMaxPredict: c.MaxPredict}
}

// runnerOptions applies dispatcher.runner_options to a request as its
// agent sent it, before herd adds settings of its own ("model": "auto"
// adds its profile's num_ctx): refused, or the runner options and
// keep_alive removed from req and from body, which it returns.
func (d *Dispatcher) runnerOptions(req *request.Request, body []byte) ([]byte, *wire.Error) {
	e, err := d.cfg.Runner().Admit(req)
	if err != nil {
		return body, wire.Errorf(wire.CodeInvalidRequest, err.Error())
	}
	return edit(body, e)
}

// maxPredict applies the num_predict cap of req's model (the one that
// runs: after "model": "auto" chose it): refused above the cap, or the cap
// set in req and body when the request gives none.
func (d *Dispatcher) maxPredict(req *request.Request, body []byte) ([]byte, *wire.Error) {
	e, err := d.cfg.Runner().Limit(req)
	if err != nil {
		return body, wire.Errorf(wire.CodeInvalidRequest, err.Error())
	}
	return edit(body, e)
}

// edit makes e to body: the body batched is the request herd admitted.
func edit(body []byte, e request.Edit) ([]byte, *wire.Error) {
	out, err := e.Body(body)
	if err != nil {
		// Decode accepted body, so this is herd's bug.
		return body, wire.Errorf(wire.CodeInternal, "apply herd's options: "+err.Error())
	}
	return out, nil
}
