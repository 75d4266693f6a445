package modelbench

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/sutazai/herd/internal/wire"
)

// Profile says how many requests a benchmark sends to each model and how
// many at once.
type Profile struct {
	// Name identifies the profile in stored results; a run is compared
	// only with earlier runs of the same name. It is a subject token.
	Name string `json:"name"`
	// Requests is the number of measured requests per model.
	Requests int `json:"requests"`
	// Concurrency is how many of them are in flight at once.
	Concurrency int `json:"concurrency"`
}

// The built-in profiles.
var (
	// Quick is 20 requests, 5 at a time.
	Quick = Profile{Name: "quick", Requests: 20, Concurrency: 5}
	// Standard is 100 requests, 10 at a time.
	Standard = Profile{Name: "standard", Requests: 100, Concurrency: 10}
	// Comprehensive is 500 requests, 20 at a time.
	Comprehensive = Profile{Name: "comprehensive", Requests: 500, Concurrency: 20}
)

// Profiles lists the built-in profiles, smallest first.
var Profiles = []Profile{Quick, Standard, Comprehensive}

// ProfileByName returns a built-in profile. When requests or concurrency
// is positive it replaces the profile's own and the profile is renamed
// "custom-<requests>x<concurrency>", so that such a run is never compared
// with a run of the unchanged profile. An unknown name returns ErrProfile.
func ProfileByName(name string, requests, concurrency int) (Profile, error) {
	i := slices.IndexFunc(Profiles, func(p Profile) bool { return p.Name == name })
	if i < 0 {
		return Profile{}, fmt.Errorf("%w: %q is not quick, standard or comprehensive", ErrProfile, name)
	}
	p := Profiles[i]
	if requests < 0 || concurrency < 0 {
		return Profile{}, fmt.Errorf("%w: requests and concurrency must not be negative", ErrProfile)
	}
	if (requests > 0 && requests != p.Requests) || (concurrency > 0 && concurrency != p.Concurrency) {
		p.Requests = cmp.Or(requests, p.Requests)
		p.Concurrency = cmp.Or(concurrency, p.Concurrency)
		p.Name = fmt.Sprintf("custom-%dx%d", p.Requests, p.Concurrency)
	}
	return p, p.Validate()
}

// Validate reports numbers that cannot run.
func (p Profile) Validate() error {
	switch {
	case !wire.ValidToken(p.Name):
		return fmt.Errorf("%w: name %q must be 1-128 characters of A-Z a-z 0-9 _ = -", ErrProfile, p.Name)
	case p.Requests < 1:
		return fmt.Errorf("%w: %s: requests must be at least 1", ErrProfile, p.Name)
	case p.Concurrency < 1:
		return fmt.Errorf("%w: %s: concurrency must be at least 1", ErrProfile, p.Name)
	}
	return nil
}
