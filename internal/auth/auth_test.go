package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/embedded"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

const shipped = "../../deploy/nats/auth.conf"

// users are every user of the shipped configuration.
var users = []string{auth.Dispatcher, auth.Worker, auth.Optimizer, auth.Gateway, auth.Operator, auth.Admin, auth.System, "alice", "bob"}

func password(user string) string { return "pw-" + user + "-secret" }

// setPasswords puts every user's password in the environment, as an
// operator would before starting the server.
func setPasswords(t *testing.T) {
	t.Helper()
	for _, u := range users {
		t.Setenv(auth.PasswordEnv(u), password(u))
	}
}

// TestShippedConfigIsRendered: deploy/nats/auth.conf is exactly what the
// roles in this package render, so the file and the code cannot drift.
func TestShippedConfigIsRendered(t *testing.T) {
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	want, err := auth.Render(auth.ExampleAgents...)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("%s differs from auth.Render: run `go run ./cmd/herd auth config > deploy/nats/auth.conf`", shipped)
	}
}

// startShipped starts the embedded server with the shipped configuration
// and provisions herd's streams as admin.
func startShipped(t *testing.T) *server.Server {
	t.Helper()
	setPasswords(t)
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:-1"
	cfg.DataDir = t.TempDir()
	cfg.SyncAlways = false
	cfg.Auth = true
	cfg.AuthFile = shipped
	s, pw, err := embedded.StartAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if pw["alice"] != password("alice") || pw[auth.Dispatcher] != password(auth.Dispatcher) {
		t.Fatalf("passwords not read from the environment: %v", pw)
	}
	admin := login(t, s, auth.Admin)
	defs, err := provision.Load(provision.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if err := defs.Ensure(t.Context(), admin.js); err != nil {
		t.Fatal(err)
	}
	return s
}

// conn is a logged-in connection that records the permission violations
// the server reports to it.
type conn struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu   sync.Mutex
	errs []string
}

func (c *conn) violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// refused waits until the server reported a permission violation naming
// subject.
func (c *conn) refused(t *testing.T, subject string) {
	t.Helper()
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, e := range c.violations() {
			if strings.Contains(e, `"`+subject+`"`) {
				return nil
			}
		}
		return errors.New("no permission violation for " + subject + " yet: " + strings.Join(c.violations(), "; "))
	})
}

// login connects as user with the inbox prefix its role may read.
func login(t *testing.T, s *server.Server, user string) *conn {
	t.Helper()
	inbox := auth.ServiceInbox(user)
	if user == "alice" || user == "bob" {
		inbox = auth.AgentInbox(user)
	}
	return loginAs(t, s, user, password(user), inbox)
}

func loginAs(t *testing.T, s *server.Server, user, pw, inbox string) *conn {
	t.Helper()
	c := &conn{}
	opts, err := auth.Client{User: user, Password: pw, InboxPrefix: inbox}.Options()
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		c.errs = append(c.errs, err.Error())
		c.mu.Unlock()
	}))
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.js, _ = jetstream.New(nc)
	return c
}

// quick is the context of a call the server refuses: it can only time
// out (the refusal itself is checked with refused), so it is short.
func quick(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

// TestForbidden: every action a role is not granted is refused by the
// server and changes nothing; the state is checked afterwards as admin.
func TestForbidden(t *testing.T) {
	s := startShipped(t)
	admin := login(t, s, auth.Admin)
	ctx := t.Context()
	kv := func(b string) jetstream.KeyValue {
		k, err := admin.js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	cache, control, results := kv(wire.BucketCache), kv(wire.BucketControl), kv(wire.BucketResults)
	// Known state the forbidden writes must leave alone.
	if _, err := control.Put(ctx, "breakers.m", []byte("closed")); err != nil {
		t.Fatal(err)
	}
	if _, err := results.Put(ctx, "bob=1", []byte(`{"status":200,"body":"bob's answer"}`)); err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T, k jetstream.KeyValue, key, want string) {
		t.Helper()
		e, err := k.Get(ctx, key)
		switch {
		case want == "" && errors.Is(err, jetstream.ErrKeyNotFound):
		case want == "":
			t.Fatalf("%s/%s exists after a refused write (err %v)", k.Bucket(), key, err)
		case err != nil:
			t.Fatalf("%s/%s: %v", k.Bucket(), key, err)
		case string(e.Value()) != want || e.Revision() == 0:
			t.Fatalf("%s/%s = %q, want %q", k.Bucket(), key, e.Value(), want)
		}
	}
	stored := func(t *testing.T, stream string) uint64 {
		t.Helper()
		st, err := admin.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Msgs
	}
	consumers := func(t *testing.T, stream string) int {
		t.Helper()
		st, err := admin.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Consumers
	}
	alice := login(t, s, "alice")
	bob := login(t, s, "bob")
	// bob's inbox, and a dispatcher's ask door, to prove nothing leaks.
	bobGot := make(chan *nats.Msg, 4)
	if _, err := bob.nc.ChanSubscribe(auth.AgentInbox("bob")+".>", bobGot); err != nil {
		t.Fatal(err)
	}
	dispatcher := login(t, s, auth.Dispatcher)
	asks := make(chan *nats.Msg, 4)
	if _, err := dispatcher.nc.ChanSubscribe(wire.AskPrefix+".>", asks); err != nil {
		t.Fatal(err)
	}
	_ = bob.nc.Flush()
	_ = dispatcher.nc.Flush()

	t.Run("agent reads another agent's inbox", func(t *testing.T) {
		for _, subj := range []string{auth.AgentInbox("bob") + ".>", "_INBOX.>", ">"} {
			got := make(chan *nats.Msg, 4)
			if _, err := alice.nc.ChanSubscribe(subj, got); err != nil {
				t.Fatal(err)
			}
			alice.refused(t, subj)
			// A dispatcher answers bob: bob gets it, alice does not.
			if err := dispatcher.nc.Publish(auth.AgentInbox("bob")+".x.1", []byte("for bob")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-bobGot:
			case <-time.After(5 * time.Second):
				t.Fatal("bob did not get his own reply")
			}
			_ = alice.nc.Flush()
			select {
			case m := <-got:
				t.Fatalf("alice read %s on %s", m.Data, m.Subject)
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	t.Run("agent reads requests", func(t *testing.T) {
		if _, err := alice.nc.SubscribeSync(wire.ReqPrefix + ".>"); err != nil {
			t.Fatal(err)
		}
		alice.refused(t, wire.ReqPrefix+".>")
	})
	t.Run("agent publishes as another agent", func(t *testing.T) {
		for _, subj := range []string{wire.ReqSubject(wire.High, "bob"), wire.ReqSubject(wire.Normal, "bob")} {
			if _, err := alice.js.Publish(quick(t), subj, []byte(`{"model":"m","prompt":"x"}`)); err == nil {
				t.Fatalf("publish %s acknowledged", subj)
			}
			alice.refused(t, subj)
		}
		if n := stored(t, wire.StreamReq); n != 0 {
			t.Fatalf("HERD_REQ holds %d messages after refused publishes", n)
		}
		if _, err := alice.nc.Request(wire.AskSubject(wire.Normal, "bob"), []byte("{}"), 200*time.Millisecond); err == nil {
			t.Fatal("ask as bob answered")
		}
		alice.refused(t, wire.AskSubject(wire.Normal, "bob"))
		select {
		case m := <-asks:
			t.Fatalf("dispatcher got %s", m.Subject)
		case <-time.After(100 * time.Millisecond):
		}
		// Looking up bob's results on bob's lookup subject.
		if _, err := alice.nc.Request(wire.LookupSubject("bob", "bob=1"), nil, 200*time.Millisecond); err == nil {
			t.Fatal("lookup as bob answered")
		}
		alice.refused(t, wire.LookupSubject("bob", "bob=1"))
	})
	t.Run("agent writes cache and control", func(t *testing.T) {
		for _, tc := range []struct {
			kv       jetstream.KeyValue
			key, was string
		}{{cache, "k1", ""}, {control, "breakers.m", "closed"}, {control, "numctx.m", ""}, {results, "bob=1", `{"status":200,"body":"bob's answer"}`}} {
			subj := "$KV." + tc.kv.Bucket() + "." + tc.key
			if _, err := alice.js.Publish(quick(t), subj, []byte("forged")); err == nil {
				t.Fatalf("write %s acknowledged", subj)
			}
			alice.refused(t, subj)
			unchanged(t, tc.kv, tc.key, tc.was)
		}
	})
	t.Run("agent touches $JS.API", func(t *testing.T) {
		if _, err := alice.js.Stream(quick(t), wire.StreamReq); err == nil {
			t.Fatal("stream info answered")
		}
		alice.refused(t, "$JS.API.STREAM.INFO."+wire.StreamReq)
		if _, err := alice.js.KeyValue(quick(t), wire.BucketResults); err == nil {
			t.Fatal("bucket bound")
		}
		get := "$JS.API.DIRECT.GET.KV_herd_results.$KV.herd_results.bob=1"
		if _, err := alice.nc.Request(get, nil, 200*time.Millisecond); err == nil {
			t.Fatal("direct get of bob's result answered")
		}
		alice.refused(t, get)
		before := consumers(t, wire.StreamReq)
		if _, err := alice.js.CreateConsumer(quick(t), wire.StreamReq, jetstream.ConsumerConfig{Durable: "steal", FilterSubject: "herd.req.>"}); err == nil {
			t.Fatal("consumer created")
		}
		if n := consumers(t, wire.StreamReq); n != before {
			t.Fatalf("HERD_REQ has %d consumers, had %d", n, before)
		}
		if err := alice.js.DeleteStream(quick(t), wire.StreamReq); err == nil {
			t.Fatal("stream deleted")
		}
		alice.refused(t, "$JS.API.STREAM.DELETE."+wire.StreamReq)
	})
	t.Run("operator writes", func(t *testing.T) {
		op := login(t, s, auth.Operator)
		if _, err := op.js.Publish(quick(t), "$KV.herd_control.breakers.m", []byte("open")); err == nil {
			t.Fatal("operator wrote control")
		}
		op.refused(t, "$KV.herd_control.breakers.m")
		unchanged(t, control, "breakers.m", "closed")
		if _, err := op.js.Publish(quick(t), wire.ReqSubject(wire.High, "alice"), []byte("{}")); err == nil {
			t.Fatal("operator published a request")
		}
		op.refused(t, wire.ReqSubject(wire.High, "alice"))
		if _, err := op.nc.Request("$JS.API.STREAM.PURGE."+wire.StreamReq, nil, 200*time.Millisecond); err == nil {
			t.Fatal("operator purged HERD_REQ")
		}
		op.refused(t, "$JS.API.STREAM.PURGE."+wire.StreamReq)
		if err := op.js.DeleteKeyValue(quick(t), wire.BucketControl); err == nil {
			t.Fatal("operator deleted herd_control")
		}
		unchanged(t, control, "breakers.m", "closed")
		before := consumers(t, wire.StreamReq)
		if _, err := op.js.CreateConsumer(quick(t), wire.StreamReq, jetstream.ConsumerConfig{Durable: "steal"}); err == nil {
			t.Fatal("operator created a consumer")
		}
		if n := consumers(t, wire.StreamReq); n != before {
			t.Fatalf("HERD_REQ has %d consumers, had %d", n, before)
		}
		if stored(t, wire.StreamReq) != 0 {
			t.Fatal("HERD_REQ changed")
		}
		// Nor listen to agents' answers or asks.
		for _, subj := range []string{"_INBOX.>", wire.AskPrefix + ".>", wire.CancelPrefix + ".*"} {
			if _, err := op.nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			op.refused(t, subj)
		}
		// What it may do: read.
		if _, err := op.js.Stream(ctx, wire.StreamReq); err != nil {
			t.Fatalf("operator stream info: %v", err)
		}
		okv, err := op.js.KeyValue(ctx, wire.BucketControl)
		if err != nil {
			t.Fatalf("operator binds herd_control: %v", err)
		}
		if e, err := okv.Get(ctx, "breakers.m"); err != nil || string(e.Value()) != "closed" {
			t.Fatalf("operator reads control: %v", err)
		}
	})
	t.Run("worker writes control decisions", func(t *testing.T) {
		w := login(t, s, auth.Worker)
		if _, err := w.js.Publish(quick(t), "$KV.herd_control.breakers.m", []byte("open")); err == nil {
			t.Fatal("worker wrote a breaker")
		}
		w.refused(t, "$KV.herd_control.breakers.m")
		unchanged(t, control, "breakers.m", "closed")
		// Its own registration it may write.
		if _, err := w.js.Publish(ctx, "$KV.herd_control.workers.w1", []byte("{}")); err != nil {
			t.Fatalf("worker registration: %v", err)
		}
		if _, err := w.js.Publish(quick(t), wire.ReqSubject(wire.High, "alice"), []byte("{}")); err == nil {
			t.Fatal("worker published a request")
		}
		w.refused(t, wire.ReqSubject(wire.High, "alice"))
	})
	t.Run("dispatcher and optimizer outside their buckets", func(t *testing.T) {
		if _, err := dispatcher.js.Publish(quick(t), "$KV.herd_cache.k2", []byte("forged")); err == nil {
			t.Fatal("dispatcher wrote the cache")
		}
		dispatcher.refused(t, "$KV.herd_cache.k2")
		unchanged(t, cache, "k2", "")
		opt := login(t, s, auth.Optimizer)
		if _, err := opt.js.Publish(quick(t), "$KV.herd_results.bob=1", []byte("forged")); err == nil {
			t.Fatal("optimizer wrote a result")
		}
		opt.refused(t, "$KV.herd_results.bob=1")
		unchanged(t, results, "bob=1", `{"status":200,"body":"bob's answer"}`)
		if _, err := opt.js.Publish(quick(t), "$KV.herd_control.workers.w1", []byte("forged")); err == nil {
			t.Fatal("optimizer wrote a worker registration")
		}
		opt.refused(t, "$KV.herd_control.workers.w1")
		if _, err := opt.js.Publish(quick(t), "$KV.herd_control.capture.enabled", []byte("true")); err == nil {
			t.Fatal("optimizer switched capture on")
		}
		opt.refused(t, "$KV.herd_control.capture.enabled")
		unchanged(t, control, "capture.enabled", "")
		// Its decisions it may write.
		if _, err := opt.js.Publish(ctx, "$KV.herd_control.breakers.other", []byte("open")); err != nil {
			t.Fatalf("optimizer breaker decision: %v", err)
		}
	})
	t.Run("no login, wrong password, wrong inbox", func(t *testing.T) {
		if nc, err := nats.Connect(s.ClientURL()); err == nil {
			nc.Close()
			t.Fatal("anonymous connection accepted")
		}
		if nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("alice", "guess")); err == nil {
			nc.Close()
			t.Fatal("wrong password accepted")
		}
		// alice with the default inbox gets no JetStream acknowledgement:
		// she cannot read _INBOX.>, so nothing shows her whose answer it was.
		plain := loginAs(t, s, "alice", password("alice"), "_INBOX")
		if _, err := plain.js.Publish(quick(t), wire.ReqSubject(wire.High, "alice"), []byte("{}")); err == nil {
			t.Fatal("acknowledged on a forbidden inbox")
		}
	})
}

// TestAllowed: each role's own path works under the shipped configuration:
// an agent's JetStream publish is acknowledged on its inbox, and the
// services' KV reads, watches and writes succeed.
func TestAllowed(t *testing.T) {
	s := startShipped(t)
	ctx := t.Context()
	alice := login(t, s, "alice")
	ack, err := alice.js.Publish(ctx, wire.ReqSubject(wire.Low, "alice"), []byte("{}"))
	if err != nil || ack.Stream != wire.StreamReq {
		t.Fatalf("alice's request: %v %+v", err, ack)
	}
	for _, user := range []string{auth.Dispatcher, auth.Worker, auth.Optimizer} {
		t.Run(user, func(t *testing.T) {
			c := login(t, s, user)
			b, err := provision.Bind(ctx, c.nc)
			if err != nil {
				t.Fatalf("bind: %v", err)
			}
			w, err := b.Control.Watch(ctx, ">")
			if err != nil {
				t.Fatalf("watch control: %v", err)
			}
			defer func() { _ = w.Stop() }()
			select {
			case <-w.Updates():
			case <-time.After(10 * time.Second):
				t.Fatal("no watch update")
			}
			if _, err := b.Control.Get(ctx, "none"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("get control: %v", err)
			}
			if len(c.violations()) > 0 {
				t.Fatalf("violations: %v", c.violations())
			}
		})
	}
	// The dispatcher's "model": "auto" reads the batch consumers and
	// announces its choices.
	d := login(t, s, auth.Dispatcher)
	bst, err := d.js.Stream(ctx, wire.StreamBatch)
	if err != nil {
		t.Fatal(err)
	}
	l := bst.ListConsumers(ctx)
	for range l.Info() {
	}
	if err := l.Err(); err != nil {
		t.Errorf("dispatcher lists batch consumers: %v", err)
	}
	_ = d.nc.Publish(wire.EventsPrefix+".auto.utility", []byte("{}"))
	// The dispatcher dead-letters what JetStream gave up on: it reads the
	// request or batch and removes it. A sequence past the end: JetStream's
	// own answer (an API error) proves the grant; a refusal gets no answer.
	for _, name := range []string{wire.StreamReq, wire.StreamBatch} {
		st, err := d.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var apiErr *jetstream.APIError
		if _, err := st.GetMsg(ctx, 1<<40); !errors.As(err, &apiErr) {
			t.Errorf("dispatcher reads a given-up message of %s: %v", name, err)
		}
		if err := st.DeleteMsg(ctx, 1<<40); err == nil || !strings.Contains(err.Error(), "API error") {
			t.Errorf("dispatcher deletes a given-up message of %s: %v", name, err)
		}
	}
	// The optimizer's reports: a stored report, its last message, the
	// benchmark history and the batch backlog.
	o := login(t, s, auth.Optimizer)
	if _, err := o.js.Publish(ctx, wire.ReportSubject("all"), []byte("{}")); err != nil {
		t.Errorf("optimizer stores a report: %v", err)
	}
	rst, err := o.js.Stream(ctx, wire.StreamReports)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rst.GetLastMsgForSubject(ctx, wire.ReportSubject("all")); err != nil {
		t.Errorf("optimizer reads its report: %v", err)
	}
	ost, err := o.js.Stream(ctx, wire.StreamBatch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ost.GetMsg(ctx, 1); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("optimizer reads the batch backlog: %v", err)
	}
	bench, err := o.js.Stream(ctx, wire.StreamBench)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := bench.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Errorf("optimizer reads benchmark history: %v", err)
	} else if _, err := oc.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond)); err != nil {
		t.Errorf("optimizer fetches benchmark history: %v", err)
	}
	for _, c := range []*conn{d, o} {
		_ = c.nc.Flush()
		if v := c.violations(); len(v) > 0 {
			t.Errorf("violations: %v", v)
		}
	}
	// The optimizer's decisions: every herd_control key it writes.
	opt := login(t, s, auth.Optimizer)
	b, err := provision.Bind(ctx, opt.nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{control.BreakerKey("m"), control.NumCtxKey("m"), control.BudgetKey, control.InstancesKey, control.KeepAliveKey("m"), control.UnloadKey("w1")} {
		if _, err := b.Control.Put(ctx, key, []byte("{}")); err != nil {
			t.Errorf("optimizer writes %s: %v", key, err)
		}
	}
}

// TestHashedAgent: an agent entry with a bcrypt hash (herd auth agent
// NAME --hashed) lets that agent in with its password and no variable.
func TestHashedAgent(t *testing.T) {
	setPasswords(t)
	block, err := auth.AgentBlockHashed("carol", "carols-secret")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := auth.Render(auth.ExampleAgents...)
	if err != nil {
		t.Fatal(err)
	}
	end := "    ]\n  }\n}\n"
	if !strings.HasSuffix(conf, end) {
		t.Fatalf("configuration does not end with the users list: %q", conf[len(conf)-40:])
	}
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, []byte(strings.TrimSuffix(conf, end)+block+end), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := embedded.DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.SyncAlways = "127.0.0.1:-1", t.TempDir(), false
	cfg.Auth, cfg.AuthFile = true, path
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	carol := loginAs(t, s, "carol", "carols-secret", auth.AgentInbox("carol"))
	if _, err := carol.nc.SubscribeSync(auth.AgentInbox("carol") + ".x"); err != nil {
		t.Fatal(err)
	}
	if err := carol.nc.Publish(wire.AskSubject(wire.Low, "carol"), nil); err != nil {
		t.Fatal(err)
	}
	if err := carol.nc.Flush(); err != nil || len(carol.violations()) > 0 {
		t.Fatalf("carol's own subjects: %v %v", err, carol.violations())
	}
	if nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("carol", "guess")); err == nil {
		nc.Close()
		t.Fatal("wrong password accepted")
	}
}

// TestInboxPrefixMustMatch: the SDK refuses WithInboxPrefix on a
// connection with another inbox prefix, since JetStream would acknowledge
// its publishes on an inbox the agent may not read.
func TestInboxPrefixMustMatch(t *testing.T) {
	s := natstest.Start(t)
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := client.New(nc, client.WithAgent("alice"), client.WithInboxPrefix(client.AgentInbox("alice"))); err == nil {
		t.Fatal("mismatched inbox prefix accepted")
	}
	for _, bad := range []string{"", "_INBOX.*", "a b", "_INBOX."} {
		if _, err := client.New(nc, client.WithInboxPrefix(bad)); err == nil {
			t.Errorf("inbox prefix %q accepted", bad)
		}
	}
}
