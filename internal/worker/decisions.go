package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/provision"
)

// numThread returns the num_thread of model's calls: the cores of the
// model's share of the optimizer's budget, else the CPU budget, capped by
// the model's configured num_thread, else (no share, nothing configured)
// by the model's own (its Modelfile's num_thread).
func (w *Worker) numThread(model string) int {
	n := max(int(w.cfg.CPUBudget), 1)
	threads, shared, own := w.settings.share(model, w.cfg.Slots, w.cfg.CPUBudget)
	m := w.cfg.NumThread[model]
	switch {
	case shared:
		n = threads
	case m <= 0 && own > 0:
		m = own
	}
	if m > 0 && m < n {
		n = m
	}
	return n
}

// modelKeepAlive returns the keep_alive of model's calls that set none:
// the optimizer's decision, else the configured one, and false when
// neither (Ollama's default).
func (w *Worker) modelKeepAlive(model string) (time.Duration, bool) {
	if d, ok := w.settings.keepAliveOf(model); ok {
		return d, true
	}
	d, ok := w.cfg.KeepAlive[model]
	return d, ok
}

// watchBudget applies the optimizer's slot allocation until ctx ends: each
// model's call limit and num_thread (control.Budget.Share). A deleted or
// unreadable allocation lifts the limits.
func (w *Worker) watchBudget(ctx context.Context) {
	provision.Watch(ctx, w.control, control.BudgetKey, func(e jetstream.KeyValueEntry) {
		var b control.Budget
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &b) != nil {
			b = control.Budget{}
		}
		w.applyBudget(b)
	})
}

// applyBudget makes b the allocation here.
func (w *Worker) applyBudget(b control.Budget) {
	w.settings.setBudget(b)
	limits := map[string]int{}
	for model := range b.Slots {
		calls, _, _ := b.Share(model, w.cfg.Slots, w.cfg.CPUBudget)
		limits[model] = calls
	}
	w.slots.setLimits(limits)
	for _, model := range w.modelNames() {
		w.m.modelCores.WithLabelValues(model).Set(float64(w.numThread(model)))
		if n, ok := limits[model]; ok {
			w.m.modelSlots.WithLabelValues(model).Set(float64(n))
		} else {
			w.m.modelSlots.DeleteLabelValues(model)
		}
	}
	threads := map[string]int{}
	for model := range limits {
		threads[model] = w.numThread(model)
	}
	w.log.Info("budget applied", zap.Any("slots", limits), zap.Any("num_thread", threads), zap.String("reason", b.Reason))
}

// watchKeepAlive applies the optimizer's keep_alive decisions until ctx
// ends.
func (w *Worker) watchKeepAlive(ctx context.Context) {
	provision.Watch(ctx, w.control, control.KeepAlivePrefix+">", func(e jetstream.KeyValueEntry) {
		model, ok := control.ModelFromKeepAliveKey(e.Key())
		if !ok {
			return
		}
		var d control.KeepAlive
		// A decision names its model: anything else under the key (a
		// JetStream ack sent there as a forged reply subject) is no
		// decision, and must not become keep_alive 0.
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &d) != nil || d.Model != model {
			w.settings.setKeepAlive(model, 0, false)
			w.m.keepAlive.DeleteLabelValues(model)
			return
		}
		w.m.keepAlive.WithLabelValues(model).Set(d.KeepAlive.Seconds())
		if w.settings.setKeepAlive(model, d.KeepAlive, true) {
			w.log.Info("keep_alive decision applied", zap.String("model", model), zap.Duration("keep_alive", d.KeepAlive), zap.String("reason", d.Reason))
		}
	})
}

// watchUnload applies the optimizer's unload decisions for this worker
// until ctx ends: each named model with no call running here is unloaded
// from Ollama (a generate call with keep_alive 0). A decision older than
// control.UnloadMaxAge is not applied.
func (w *Worker) watchUnload(ctx context.Context) {
	provision.Watch(ctx, w.control, control.UnloadKey(w.cfg.ID), func(e jetstream.KeyValueEntry) {
		var u control.Unload
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &u) != nil {
			return
		}
		if time.Since(u.At) > control.UnloadMaxAge {
			return
		}
		load := w.slots.load(time.Now())
		for _, model := range u.Models {
			if l := load[model]; l.running > 0 || l.waiting > 0 {
				w.log.Info("unload skipped: the model has calls", zap.String("model", model), zap.Int("running", l.running), zap.Int("waiting", l.waiting))
				continue
			}
			uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := w.ollama.Generate(uctx, &api.GenerateRequest{Model: model, KeepAlive: &api.Duration{Duration: 0}},
				func(api.GenerateResponse) error { return nil })
			cancel()
			if err != nil {
				w.log.Warn("unload failed", zap.String("model", model), zap.Error(err))
				continue
			}
			w.m.unloads.WithLabelValues(model).Inc()
			w.log.Info("model unloaded", zap.String("model", model), zap.String("reason", u.Reason))
		}
	})
}

// watchPreload applies the optimizer's preload decisions for this worker
// until ctx ends: each named model whose burst is not yet due and that has
// no call here is loaded into Ollama (a generate call with an empty
// prompt) in the window and with the threads its calls run with, so the
// burst does not wait for a load or a reload, and kept loaded past the
// due time (the decision's keep_alive, or the model's own when longer).
func (w *Worker) watchPreload(ctx context.Context) {
	provision.Watch(ctx, w.control, control.PreloadKey(w.cfg.ID), func(e jetstream.KeyValueEntry) {
		var p control.Preload
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &p) != nil || p.Worker != w.cfg.ID {
			return
		}
		load := w.slots.load(time.Now())
		for _, pm := range p.Models {
			w.mu.Lock()
			_, served := w.models[pm.Model]
			w.mu.Unlock()
			if l := load[pm.Model]; !served || !time.Now().Before(pm.Due) || l.running > 0 || l.waiting > 0 {
				continue
			}
			start := time.Now()
			req := &api.GenerateRequest{Model: pm.Model, Options: map[string]any{"num_thread": w.numThread(pm.Model)}}
			if n := w.numCtx(pm.Model); n > 0 {
				req.Options["num_ctx"] = n
			}
			keep := pm.KeepAlive
			if ka, ok := w.modelKeepAlive(pm.Model); ok && (ka < 0 || ka > keep) {
				keep = ka
			}
			req.KeepAlive = &api.Duration{Duration: keep}
			pctx, cancel := context.WithTimeout(ctx, time.Until(pm.Due)+30*time.Second)
			err := w.ollama.Generate(pctx, req, func(api.GenerateResponse) error { return nil })
			cancel()
			if err != nil {
				w.log.Warn("preload failed", zap.String("model", pm.Model), zap.Error(err))
				continue
			}
			w.log.Info("model preloaded", zap.String("model", pm.Model), zap.Duration("took", time.Since(start)),
				zap.Duration("due_in", time.Until(pm.Due)), zap.Duration("keep_alive", keep), zap.String("reason", p.Reason))
		}
	})
}

// report is the worker's heartbeat event: its slots, each model's calls,
// its host's memory and the models its Ollama holds.
func (w *Worker) report(ctx context.Context) *events.Worker {
	now := time.Now()
	ev := &events.Worker{At: now, ID: w.cfg.ID, Slots: w.cfg.Slots, Busy: w.slots.busy(),
		CPUBudget: w.cfg.CPUBudget, Models: w.modelNames(), Load: map[string]events.ModelLoad{}}
	load := w.slots.load(now)
	for _, model := range ev.Models {
		l := load[model]
		ev.Load[model] = events.ModelLoad{Busy: l.running, Waiting: l.waiting, OldestWaitMs: l.oldestWait.Milliseconds(),
			Slots: l.limit, NumThread: w.numThread(model), LastUsed: l.lastUsed}
	}
	memory := w.cfg.Memory
	if memory == nil {
		memory = ReadMemInfo
	}
	if used, total, err := memory(); err == nil {
		ev.MemUsedBytes, ev.MemTotalBytes = used, total
	} else {
		w.log.Debug("read memory", zap.Error(err))
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ps, err := w.ollama.ListRunning(lctx); err == nil {
		for _, m := range ps.Models {
			name := m.Name
			if base, ok := trimLatest(name); ok {
				name = base
			}
			ev.Loaded = append(ev.Loaded, events.Loaded{Model: name, SizeBytes: m.Size, ExpiresAt: m.ExpiresAt})
		}
	}
	return ev
}
