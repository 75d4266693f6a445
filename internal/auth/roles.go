package auth

import (
	"fmt"
	"strings"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// The users of the service roles, as named in the server configuration.
// Each role's inbox prefix is "_INBOX_<user>" (ServiceInbox), outside the
// "_INBOX.>" space where herd's services deliver answers.
const (
	Dispatcher = "dispatcher"
	Worker     = "worker"
	Optimizer  = "optimizer"
	// Gateway is the user of the HTTP doors (internal/gateway), a user of
	// AgentsAccount that may act only as the agents its API keys name
	// (GatewayRole).
	Gateway = "gateway"
	// Operator reads: stream, consumer and KV information and contents,
	// metric and event subjects. It writes nothing.
	Operator = "operator"
	// Admin may do everything in herd's account: provisioning by hand,
	// `herd capture on|off`, stream edits with the nats CLI.
	Admin = "admin"
	// System is the user of the NATS system account (server monitoring).
	System = "sys"
)

// Account names in the server configuration. Account holds herd's
// streams and the users of its services and the admin. AgentsAccount
// holds the agents and OperatorAccount the read-only operator; neither
// has streams. Their users reach herd only through what Account exports
// to them (Exports), so a reply subject they name is mapped by the server
// and anything sent to it (a JetStream acknowledgement or API answer
// included) lands back in their own account, never on a stream or key.
const (
	Account         = "HERD"
	AgentsAccount   = "AGENTS"
	OperatorAccount = "OPS"
	SystemAccount   = "SYS"
)

// ServiceReplies are the subjects the server maps the reply subjects of
// agents' calls to in Account ("_R_.<prefix>.<token>"). The dispatcher
// and workers answer asks and lookups there; the server forwards the
// answer to the agent's own reply subject in AgentsAccount.
const ServiceReplies = "_R_.>"

// AskResponseTime is how long after an ask the server keeps forwarding
// answers to it (the service export's response threshold): the wait in
// the queue plus one Ollama call (ollama.timeout, default 10m), with room.
const AskResponseTime = "30m"

// Export is one subject space Account exports to another account, which
// imports it under the same name.
type Export struct {
	Subject string
	// To is the importing account.
	To string
	// Service: the importing account's users call it and their reply
	// subject is mapped. Else a stream: messages published in Account
	// flow to the importing account.
	Service bool
	// Streamed: a service answers with several messages to one reply,
	// for ResponseTime; else with one, within the server's default two
	// minutes.
	Streamed     bool
	ResponseTime string
}

// Exports are what Account exports. To AgentsAccount: requests
// (JetStream publishes, acknowledged once), asks (streamed answers),
// cancels and lookups as services, and "_INBOX.>" as a stream, where herd
// answers queued requests at their Herd-Reply-To later. To
// OperatorAccount: the operator's $JS.API reads as services and the
// subjects it subscribes to (metrics, events) as streams.
func Exports() []Export {
	e := []Export{
		{Subject: wire.ReqPrefix + ".>", To: AgentsAccount, Service: true},
		{Subject: wire.AskPrefix + ".>", To: AgentsAccount, Service: true, Streamed: true, ResponseTime: AskResponseTime},
		{Subject: wire.CancelPrefix + ".>", To: AgentsAccount, Service: true},
		{Subject: wire.LookupPrefix + ".>", To: AgentsAccount, Service: true},
		// The served models, for the gateway's /api/tags (only its role
		// may ask).
		{Subject: wire.ModelsSubject, To: AgentsAccount, Service: true},
		{Subject: wire.AgentInboxSpace, To: AgentsAccount},
	}
	op := operator()
	for _, s := range op.Publish {
		x := Export{Subject: s, To: OperatorAccount, Service: true}
		if s == microAPI {
			// Every herd process answers a ping, info or stats.
			x.Streamed, x.ResponseTime = true, MicroResponseTime
		}
		e = append(e, x)
	}
	for _, s := range op.Subscribe {
		if s != ServiceInbox(Operator)+".>" {
			e = append(e, Export{Subject: s, To: OperatorAccount})
		}
	}
	return e
}

// microAPI is the subject space of NATS micro services' pings, infos and
// stats ($SRV.PING, $SRV.INFO.<name>, $SRV.STATS.<name>.<id>).
const microAPI = "$SRV.>"

// MicroResponseTime is how long the server forwards the answers of herd's
// processes to an operator's `nats micro` call.
const MicroResponseTime = "10s"

// microService is what the process of role subscribes to as its micro
// service (internal/discovery): the $SRV verbs for all services, for its
// name and for its instance, and its status endpoint.
func microService(role string) []string {
	name := discovery.Name(role)
	return []string{"$SRV.*", "$SRV.*." + name, "$SRV.*." + name + ".*", discovery.StatusSubject(role)}
}

// ExampleAgents are the agents the shipped configuration declares.
var ExampleAgents = []string{"alice", "bob"}

// Role is a user's name and the subjects it may publish and subscribe to;
// everything else is refused by the server.
type Role struct {
	User string
	// Doc says who uses the role, one line.
	Doc       string
	Publish   []string
	Subscribe []string
	// PublishDeny are refused even when Publish allows them.
	PublishDeny []string
	// All grants everything in the account (the admin role).
	All bool
	// AllowResponses lets the user answer, once, the reply subject of a
	// request it received: how herd's micro services (internal/discovery)
	// answer `nats micro` pings, infos and stats from any account,
	// without a grant on every inbox.
	AllowResponses bool
	// Account is the account the user belongs to.
	Account string
}

// AgentInbox returns the inbox prefix of agent: "_INBOX.<agent>". The
// agent may subscribe only below it, and herd's services may answer there.
func AgentInbox(agent string) string { return "_INBOX." + agent }

// ServiceInbox returns the inbox prefix of a service role's user:
// "_INBOX_<user>". Answers from herd can never be sent there.
func ServiceInbox(user string) string { return "_INBOX_" + user }

// DefaultInbox returns the inbox prefix user's permissions allow:
// ServiceInbox for the dispatcher, worker, optimizer, gateway and operator
// roles, AgentInbox for anyone else (agents, and admin, whose answers from
// herd must be deliverable), and "" (nats.go's "_INBOX") without a user.
func DefaultInbox(user string) string {
	if user == "" {
		return ""
	}
	if user == Gateway {
		return ServiceInbox(user)
	}
	if r, ok := Lookup(user); ok && !r.All {
		return ServiceInbox(user)
	}
	return AgentInbox(user)
}

// PasswordEnv returns the environment variable that holds user's
// password in the shipped configuration: NATS_PASSWORD_<USER>, the
// user upper-cased with every character other than A-Z and 0-9 as '_'.
// Not HERD_*: those are herd's own settings, and an unknown one is an
// error.
func PasswordEnv(user string) string {
	var b strings.Builder
	b.WriteString("NATS_PASSWORD_")
	for _, r := range strings.ToUpper(user) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Agent returns the role of one agent, a user of AgentsAccount: it may
// publish requests and asks under its own name only, cancel, look up its
// own results through the dispatcher, and read only its own inbox. It
// has no $JS.API access: a JetStream publish is acknowledged on the inbox.
// A name whose password variable (PasswordEnv) is a service user's
// ("Admin") is refused.
func Agent(name string) (Role, error) {
	if !wire.ValidToken(name) {
		return Role{}, fmt.Errorf("%w: %q must be 1-128 characters of A-Z a-z 0-9 _ = -", ErrAgentName, name)
	}
	// The password variable must be the agent's own, not a service's.
	for _, u := range []string{Dispatcher, Worker, Optimizer, Gateway, Operator, Admin, System} {
		if PasswordEnv(name) == PasswordEnv(u) {
			return Role{}, fmt.Errorf("%w: %q would log in with %s, the password of user %s", ErrAgentName, name, PasswordEnv(u), u)
		}
	}
	return Role{
		User: name,
		Doc:  "agent " + name + ": its own request subjects and inbox",
		Publish: []string{
			wire.ReqPrefix + ".*." + name,
			wire.AskPrefix + ".*." + name,
			wire.CancelPrefix + "." + name + ".*",
			wire.LookupPrefix + "." + name + ".*",
		},
		Subscribe: []string{AgentInbox(name) + ".>"},
		Account:   AgentsAccount,
	}, nil
}

// GatewayRole returns the role of the HTTP gateway whose API keys name
// agents: a user of AgentsAccount, like an agent, so that its calls'
// reply subjects are mapped by the server and whatever answers them lands
// back in AgentsAccount, never on a stream or key of Account (in Account,
// a lookup or ask naming a reply such as "$KV.herd_results.<id>" would be
// answered there with a service's rights). It may ask, cancel and look up
// as each of agents only, ask the dispatchers for the served models
// (wire.ModelsSubject, for /api/tags: it has no JetStream access, so it
// cannot read herd_control), and read its own inbox, ServiceInbox(Gateway),
// outside the "_INBOX.>" space herd's services answer into. Its micro
// service (internal/discovery) may subscribe; only the gateway's own
// account can reach it. An invalid agent name is refused (ErrAgentName).
func GatewayRole(agents ...string) (Role, error) {
	pub := []string{}
	seen := map[string]bool{}
	for _, a := range agents {
		if !wire.ValidToken(a) {
			return Role{}, fmt.Errorf("%w: gateway agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", ErrAgentName, a)
		}
		if seen[a] {
			continue
		}
		seen[a] = true
		pub = append(pub,
			wire.AskPrefix+".*."+a,
			wire.CancelPrefix+"."+a+".*",
			wire.LookupPrefix+"."+a+".*",
		)
	}
	doc := "gateway (HTTP doors): asks, cancels and lookups as its API keys' agents only"
	if len(seen) == 0 {
		doc += " (none: every call is 401)"
	}
	return Role{
		User:      Gateway,
		Doc:       doc,
		Publish:   append(pub, wire.ModelsSubject),
		Subscribe: append([]string{ServiceInbox(Gateway) + ".>"}, microService(Gateway)...),
		Account:   AgentsAccount,
	}, nil
}

func kvStream(bucket string) string { return "KV_" + bucket }

const api = "$JS.API."

// provisioning is what provision.Ensure sends, which every service runs
// at start-up: account info (KV creation asks for it), create, update and
// info of each defined stream and bucket by name, and creation of the
// defined consumers. It follows the definitions in streams/, so a new
// stream is granted where it is defined.
func provisioning() []string {
	defs, err := provision.Load(provision.Overrides{})
	if err != nil {
		panic("auth: stream definitions: " + err.Error()) // embedded files, tested
	}
	var names []string
	for _, c := range defs.Streams {
		names = append(names, c.Name)
	}
	for _, c := range defs.Buckets {
		names = append(names, kvStream(c.Bucket))
	}
	s := []string{api + "INFO"}
	for _, n := range names {
		s = append(s, api+"STREAM.CREATE."+n, api+"STREAM.UPDATE."+n, api+"STREAM.INFO."+n)
	}
	seen := map[string]bool{}
	for _, c := range defs.Consumers {
		if !seen[c.Stream] {
			seen[c.Stream] = true
			s = append(s, api+"CONSUMER.CREATE."+c.Stream+".>")
		}
	}
	return s
}

// kvRead is what reading a bucket with Get sends (buckets allow direct get).
func kvRead(bucket string) string { return api + "DIRECT.GET." + kvStream(bucket) + ".>" }

// kvWatch is what watching or listing a bucket's keys sends: an ordered
// push consumer is created (with or without a filter), deleted on reset,
// and answers flow control.
func kvWatch(bucket string) []string {
	st := kvStream(bucket)
	return []string{
		api + "CONSUMER.CREATE." + st,
		api + "CONSUMER.CREATE." + st + ".>",
		api + "CONSUMER.DELETE." + st + ".>",
		"$JS.FC." + st + ".>",
	}
}

// kvWrite is a put, create, update or delete of the keys matching keys
// (a subject pattern such as "workers.>").
func kvWrite(bucket, keys string) string { return "$KV." + bucket + "." + keys }

// pull is what a pull consumer of stream needs: its info, its next
// messages, and acknowledgements.
func pull(stream string) []string {
	return []string{
		api + "CONSUMER.INFO." + stream + ".*",
		api + "CONSUMER.MSG.NEXT." + stream + ".*",
		"$JS.ACK." + stream + ".>",
	}
}

func join(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Services returns the roles of herd's own processes and people, in the
// order the configuration lists them: dispatcher, worker, optimizer,
// operator, admin.
func Services() []Role {
	replies := wire.AgentInboxSpace
	dispatcher, worker, optimizer := dispatcherRole(replies), workerRole(replies), optimizerRole(replies)
	admin := Role{User: Admin, Doc: "administrators: everything in herd's account", All: true}
	for _, r := range []*Role{&dispatcher, &worker, &optimizer, &admin} {
		r.Account = Account
	}
	return []Role{dispatcher, worker, optimizer, operator(), admin}
}

// dispatcherRole is the dispatchers' role; replies is the space they answer agents in.
func dispatcherRole(replies string) Role {
	return Role{
		User: Dispatcher,
		Doc:  "dispatchers: take requests, answer errors, cache hits and lookups, publish batches",
		Publish: join(provisioning(), pull(wire.StreamReq), pull(wire.StreamAdvisories), pull(wire.StreamBatch), []string{
			kvRead(wire.BucketResults), kvRead(wire.BucketCache), kvRead(wire.BucketInflight), kvRead(wire.BucketControl),
			kvWrite(wire.BucketResults, ">"), kvWrite(wire.BucketInflight, ">"),
			// "model": "auto" reads the batch backlog per model.
			api + "CONSUMER.LIST." + wire.StreamBatch,
			// A request or batch JetStream gave up on (max deliveries) is
			// read, dead-lettered and removed.
			api + "STREAM.MSG.GET." + wire.StreamReq, api + "STREAM.MSG.GET." + wire.StreamBatch,
			api + "STREAM.MSG.DELETE." + wire.StreamReq, api + "STREAM.MSG.DELETE." + wire.StreamBatch,
		}, kvWatch(wire.BucketControl), []string{
			wire.ReqPrefix + ".>", wire.BatchPrefix + ".>", wire.WakePrefix + ".>", wire.DonePrefix + ".>",
			wire.DLQPrefix + ".>", wire.CapturePrefix + ".>", wire.MetricsPrefix + ".>",
			wire.EventsPrefix + ".auto.>",
			replies, ServiceReplies,
		}),
		Subscribe: append([]string{
			wire.AskPrefix + ".>", wire.CancelPrefix + ".*.*", wire.DonePrefix + ".*", wire.LookupPrefix + ".*.*",
			wire.ModelsSubject,
			ServiceInbox(Dispatcher) + ".>",
		}, microService(Dispatcher)...),
		AllowResponses: true,
	}
}

// workerRole is the workers' role; replies is the space they answer agents in.
func workerRole(replies string) Role {
	return Role{
		User: Worker,
		Doc:  "workers: run batches on Ollama, answer, store results and cache entries, register",
		Publish: join(provisioning(), pull(wire.StreamBatch), []string{
			api + "CONSUMER.CREATE." + wire.StreamBatch + ".>",
			kvRead(wire.BucketResults), kvRead(wire.BucketCache), kvRead(wire.BucketInflight), kvRead(wire.BucketControl),
			kvWrite(wire.BucketResults, ">"), kvWrite(wire.BucketCache, ">"), kvWrite(wire.BucketInflight, ">"),
			kvWrite(wire.BucketControl, registry.KeyPrefix+">"),
		}, kvWatch(wire.BucketControl), []string{
			wire.DonePrefix + ".>", wire.DLQPrefix + ".>", wire.MetricsPrefix + ".>",
			replies, ServiceReplies,
		}),
		Subscribe: append([]string{
			wire.WakePrefix + ".>", wire.CancelPrefix + ".*.*",
			// wire.GonePrefix: no-responders statuses of streamed chunks
			// and presence probes whose agent went away (the probes go to
			// a sibling of the reply subject, inside replies).
			"_HERD_GONE.>",
			ServiceInbox(Worker) + ".>",
		}, microService(Worker)...),
		AllowResponses: true,
	}
}

// optimizerRole is the optimizer's (and the live page's) role; replies is the space agents' answers go to.
func optimizerRole(replies string) Role {
	return Role{
		User: Optimizer,
		Doc:  "optimizer (and its live page): read metrics, write breaker and num_ctx decisions",
		Publish: join(provisioning(), pull(wire.StreamMetrics), []string{
			api + "CONSUMER.CREATE." + wire.StreamMetrics + ".>",
			api + "CONSUMER.DELETE." + wire.StreamMetrics + ".*",
			api + "CONSUMER.INFO." + wire.StreamReq + ".*",
			// The backlog: batch consumers and their oldest waiting batch.
			api + "CONSUMER.INFO." + wire.StreamBatch + ".*",
			api + "STREAM.MSG.GET." + wire.StreamBatch,
			// One-shot reports (optimizer --once): benchmark history and
			// the stored reports.
			api + "CONSUMER.CREATE." + wire.StreamBench + ".>",
			api + "CONSUMER.DELETE." + wire.StreamBench + ".*",
			api + "CONSUMER.INFO." + wire.StreamBench + ".*",
			api + "CONSUMER.MSG.NEXT." + wire.StreamBench + ".*",
			api + "STREAM.MSG.GET." + wire.StreamBench,
			api + "STREAM.MSG.GET." + wire.StreamReports,
			kvRead(wire.BucketControl),
			// Its decisions (breakers, num_ctx, budget, keep-alive, ...)
			// are every herd_control key but the workers' registrations
			// and the capture switch.
			kvWrite(wire.BucketControl, ">"),
		}, kvWatch(wire.BucketControl), []string{
			wire.EventsPrefix + ".>", wire.ReportsPrefix + ".>",
		}),
		PublishDeny: []string{
			kvWrite(wire.BucketControl, registry.KeyPrefix+">"),
			kvWrite(wire.BucketControl, capture.KeyEnabled),
		},
		Subscribe: append([]string{
			wire.MetricsPrefix + ".>", wire.EventsPrefix + ".>",
			ServiceInbox(Optimizer) + ".>",
		}, microService(Optimizer)...),
		AllowResponses: true,
	}
}

// operator is the read-only role, a user of OperatorAccount: what it may
// call and subscribe to is also what Account exports to that account.
func operator() Role {
	return Role{
		User: Operator,
		Doc:  "operators (read-only): stream, consumer and KV info and reads, metrics and events, herd's micro services",
		Publish: []string{
			api + "INFO",
			api + "STREAM.NAMES", api + "STREAM.LIST", api + "STREAM.INFO.*",
			api + "CONSUMER.NAMES.*", api + "CONSUMER.LIST.*", api + "CONSUMER.INFO.*.*",
			api + "DIRECT.GET.>", api + "STREAM.MSG.GET.*",
			// nats micro ls, info and stats, and each process's status.
			microAPI, wire.StatusPrefix + ".>",
		},
		Subscribe: []string{
			wire.MetricsPrefix + ".>", wire.EventsPrefix + ".>",
			ServiceInbox(Operator) + ".>",
		},
		Account: OperatorAccount,
	}
}

// Lookup returns the service role named user, and whether there is one.
func Lookup(user string) (Role, bool) {
	for _, r := range Services() {
		if r.User == user {
			return r, true
		}
	}
	return Role{}, false
}
