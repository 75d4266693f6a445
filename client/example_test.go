package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/stack"
)

// The examples run against herd itself: `herd up` (stack.Up) in this
// process, on an embedded NATS server, with a fake Ollama that answers
// "echo: " and the prompt and serves herd-tiny. It starts at the first
// example that needs it; TestMain stops it. herdURL is where an agent
// would give nats.DefaultURL or its cluster's URL.

var (
	herdOnce sync.Once
	herdAddr string
	herdStop = func() {}
)

// herdURL starts herd once and returns its NATS URL.
func herdURL() string {
	herdOnce.Do(func() {
		ex := &exampleTB{}
		dir, err := os.MkdirTemp("", "herd-example-")
		if err != nil {
			panic(err)
		}
		ex.Cleanup(func() { _ = os.RemoveAll(dir) })
		fake := ollamatest.New(ex, ollamatest.WithModels("herd-tiny"))
		c := config.Default()
		c.Server.Listen = "127.0.0.1:-1"
		c.Server.DataDir = dir
		c.Server.SyncAlways = false
		c.HTTP.Listen = ""
		c.Ollama.URL = fake.URL
		ctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan string, 1), make(chan error, 1)
		go func() { done <- stack.Up(ctx, c, zap.NewNop(), func(url string) { ready <- url }) }()
		herdStop = func() {
			cancel()
			<-done
			ex.cleanup()
		}
		select {
		case herdAddr = <-ready:
		case err := <-done:
			panic(fmt.Sprintf("herd up: %v", err))
		case <-time.After(time.Minute):
			panic("herd up: not ready after a minute")
		}
	})
	return herdAddr
}

func TestMain(m *testing.M) {
	code := m.Run()
	herdStop()
	os.Exit(code)
}

// exampleTB is the testing.TB that ollamatest.New asks for, which
// examples do not have: it only keeps the cleanups.
type exampleTB struct {
	testing.TB // nil: ollamatest.New calls only Helper and Cleanup
	cleanups   []func()
}

func (*exampleTB) Helper()            {}
func (t *exampleTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

func (t *exampleTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// connect returns a client for the examples; an agent calls client.New
// on its own connection, as Example shows.
func connect(agent string) (*client.Client, func()) {
	nc, err := nats.Connect(herdURL())
	if err != nil {
		panic(err)
	}
	c, err := client.New(nc, client.WithAgent(agent))
	if err != nil {
		panic(err)
	}
	return c, func() { _ = c.Close(); nc.Close() }
}

// An agent connects to NATS, makes a client and asks: the request is
// stored durably in JetStream, queued by priority, batched and run on
// Ollama, and the answer comes back in Ollama's own type.
func Example() {
	nc, err := nats.Connect(herdURL()) // nats.DefaultURL next to `herd up`
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithAgent("planner"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	resp, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: "herd-tiny", Prompt: "why is the sky blue?"},
		client.At(client.High), client.Timeout(30*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Response)
	fmt.Println(meta.Status)
	// Output:
	// echo: why is the sky blue?
	// 200
}

func ExampleClient_Generate() {
	c, done := connect("writer")
	defer done()

	resp, meta, err := c.Generate(context.Background(), &api.GenerateRequest{
		Model:   "herd-tiny",
		Prompt:  "name a colour",
		Options: map[string]any{"temperature": 0},
	}, client.Timeout(time.Minute))
	if err != nil {
		fmt.Println(err)
		return
	}
	// meta.Cache says whether Ollama ran it ("miss"), the cache answered
	// ("hit") or an identical request's answer was shared ("coalesced").
	fmt.Println(resp.Response, resp.Done, meta.RequestID != "")
	// Output: echo: name a colour true true
}

func ExampleClient_Chat() {
	c, done := connect("assistant")
	defer done()

	resp, _, err := c.Chat(context.Background(), &api.ChatRequest{
		Model: "herd-tiny",
		Messages: []api.Message{
			{Role: "system", Content: "You answer in one word."},
			{Role: "user", Content: "hello"},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Message.Role+":", resp.Message.Content)
	// Output: assistant: echo: hello
}

// A streaming call gets Ollama's chunks in order as they are generated;
// the last has Done set.
func ExampleClient_GenerateStream() {
	c, done := connect("storyteller")
	defer done()

	_, err := c.GenerateStream(context.Background(), &api.GenerateRequest{Model: "herd-tiny", Prompt: "once upon a time"},
		func(r api.GenerateResponse) error {
			fmt.Print(r.Response)
			if r.Done {
				fmt.Println()
			}
			return nil
		})
	if err != nil {
		fmt.Println(err)
	}
	// Output: echo: once upon a time
}

// Embeddings of several inputs: herd sends the embedding requests of a
// batch to Ollama as one /api/embed call.
func ExampleClient_Embed() {
	c, done := connect("indexer")
	defer done()

	resp, _, err := c.Embed(context.Background(), &api.EmbedRequest{Model: "herd-tiny", Input: []string{"first text", "second text"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(resp.Embeddings), "vectors of", len(resp.Embeddings[0]), "dimensions")
	// Output: 2 vectors of 8 dimensions
}

// A request with its own id runs once however often it is sent: an agent
// that crashed, or timed out, sends it again under the same id and gets
// the stored answer instead of a second run.
func ExampleRequestID() {
	c, done := connect("billing")
	defer done()
	ctx := context.Background()
	req := &api.GenerateRequest{Model: "herd-tiny", Prompt: "summarize invoice 42"}

	first, m1, err := c.Generate(ctx, req, client.RequestID("invoice-42-summary"))
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... the agent restarts and sends the same request again:
	again, m2, err := c.Generate(ctx, req, client.RequestID("invoice-42-summary"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(first.Response)
	fmt.Println(again.Response == first.Response, m1.RequestID == m2.RequestID)
	// Output:
	// echo: summarize invoice 42
	// true true
}

// A call ends early when its context ends or when a streaming callback
// returns an error: the client then cancels the request in herd
// (herd.cancel.<id>), which stops it in the queue or on Ollama.
func ExampleClient_GenerateStream_cancel() {
	c, done := connect("impatient")
	defer done()
	errEnough := errors.New("enough")

	_, err := c.GenerateStream(context.Background(), &api.GenerateRequest{Model: "herd-tiny", Prompt: "count to a thousand"},
		func(r api.GenerateResponse) error {
			fmt.Println("first chunk:", r.Response)
			return errEnough
		}, client.Cache("off")) // a cached answer would come as one chunk
	fmt.Println(errors.Is(err, errEnough))
	// Output:
	// first chunk: echo:
	// true
}

// With "model": "auto" herd picks the model from the agent's profile
// (dispatcher.auto: "batch-*" agents are high-throughput) and the
// workers' load; Meta.Model names the one that answered.
func ExampleMeta_auto() {
	c, done := connect("batch-ingest")
	defer done()

	resp, meta, err := c.Generate(context.Background(), &api.GenerateRequest{Model: "auto", Prompt: "tag this"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(meta.Model, resp.Model)
	// Output: herd-tiny herd-tiny
}
