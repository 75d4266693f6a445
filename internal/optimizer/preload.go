package optimizer

import (
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/policy"
)

// preloadKey is one model on one worker.
type preloadKey struct{ worker, model string }

// forgetPreloads drops what was decided for worker (gone); mu must be
// held.
func (f *fleet) forgetPreloads(worker string) {
	delete(f.preloads, worker)
	for k := range f.preloaded {
		if k.worker == worker {
			delete(f.preloaded, k)
		}
	}
}

// decidePreloads evaluates, for each model a live worker serves, whether
// its arrivals have a rhythm whose next burst is due within the lead
// (policy.PreloadByRhythm), and returns a decision for each worker that
// should load one now: a worker that serves the model, does not hold it,
// has no unload of it in progress, and whose memory stays below the unload
// threshold with it (its size as a worker last reported it; unknown
// memory never fits). Each (worker, model) is preloaded once per expected
// burst. Priority models are kept loaded and are not preloaded.
func (f *fleet) decidePreloads(now time.Time) []control.Preload {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg := f.cfg.preload()
	if cfg.Lead <= 0 {
		return nil
	}
	workers := f.live(now)
	for _, w := range workers {
		for _, l := range w.Loaded {
			if l.SizeBytes > 0 {
				f.sizes[l.Model] = l.SizeBytes
			}
		}
	}
	var out []control.Preload
	for _, w := range workers {
		held := map[string]bool{}
		for _, l := range w.Loaded {
			held[l.Model] = true
		}
		unloading := map[string]bool{}
		if u := f.unloads[w.ID]; now.Sub(u.At) < control.UnloadMaxAge {
			for _, m := range u.Models {
				unloading[m] = true
			}
		}
		p := control.Preload{Worker: w.ID, At: now, Numbers: map[string]float64{}}
		var reasons []string
		used := w.MemUsedBytes
		for _, m := range slices.Sorted(slices.Values(w.Models)) {
			a := f.arrivals[m]
			if f.priority[m] || unloading[m] || len(a) < cfg.MinBursts {
				continue
			}
			fits := w.MemTotalBytes > 0 && float64(used+f.sizes[m]) < f.cfg.Warmth.MemoryThreshold*float64(w.MemTotalBytes)
			d := policy.PreloadByRhythm(cfg, m, now, policy.RhythmInput{Arrivals: a, Loaded: held[m], MemoryFits: fits})
			k := preloadKey{w.ID, m}
			if !d.Changed || f.preloaded[k].Equal(d.Value) {
				continue
			}
			f.preloaded[k] = d.Value
			used += f.sizes[m] // a second model on this host counts this one
			period := time.Duration(d.Numbers["period_seconds"] * float64(time.Second))
			keep := d.Value.Sub(now) + max(cfg.Lead, time.Duration(cfg.Tolerance*float64(period)))
			p.Models = append(p.Models, control.PreloadModel{Model: m, Due: d.Value, KeepAlive: keep})
			reasons = append(reasons, d.Reason)
			for _, name := range slices.Sorted(maps.Keys(d.Numbers)) {
				p.Numbers[name+"/"+m] = d.Numbers[name]
			}
			p.Numbers["keep_alive_seconds/"+m] = keep.Seconds()
			p.Numbers["size_bytes/"+m] = float64(f.sizes[m])
		}
		if len(p.Models) == 0 {
			continue
		}
		p.Numbers["memory_used_bytes"], p.Numbers["memory_total_bytes"] = float64(w.MemUsedBytes), float64(w.MemTotalBytes)
		p.Numbers["memory_threshold"] = f.cfg.Warmth.MemoryThreshold
		p.Reason = strings.Join(reasons, "; ")
		f.preloads[w.ID] = p
		out = append(out, p)
	}
	return out
}

// applyPreloads writes each preload decision to herd_control
// (preload.<worker>), announces it on herd.events.preload.<model> for each
// model it names, logs and counts it.
func (s *Service) applyPreloads(ps []control.Preload) {
	for _, p := range ps {
		var subjects, models []string
		for _, m := range p.Models {
			subjects = append(subjects, EventSubject(policy.KindPreload, m.Model))
			models = append(models, m.Model)
		}
		if !s.put(control.PreloadKey(p.Worker), p.Marshal(), subjects...) {
			continue
		}
		for _, m := range models {
			s.m.preloads.WithLabelValues(m).Inc()
		}
		s.m.decisions.WithLabelValues(string(policy.KindPreload), "changed").Inc()
		s.log.Info("preload decision", zap.String("worker", p.Worker), zap.Strings("models", models), zap.String("reason", p.Reason),
			zap.Any("numbers", p.Numbers))
	}
}
