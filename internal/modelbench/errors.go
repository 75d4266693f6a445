package modelbench

import "errors"

var (
	// ErrSuite is returned when a prompt suite cannot be used; the message
	// names the case and what is wrong with it.
	ErrSuite = errors.New("bad prompt suite")
	// ErrProfile is returned for an unknown profile name or bad numbers.
	ErrProfile = errors.New("bad bench profile")
	// ErrNoModels is returned when no model was given and no live worker
	// registered one: start herd (and its workers) or name --model.
	ErrNoModels = errors.New("no model to benchmark: no live worker registered one")
	// ErrNoRuns is returned by Store.Last when the model has no stored run
	// for the profile.
	ErrNoRuns = errors.New("no stored bench run")
)
