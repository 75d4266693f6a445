package modelbench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
	"go.yaml.in/yaml/v3"
)

// DefaultSuitePath is where `herd bench` looks for its prompt suite.
const DefaultSuitePath = "config/prompts.yaml"

// answerShown is how much of a failed answer a Failure keeps.
const answerShown = 160

// Suite is a prompt suite: what the measured requests send and the quality
// cases. It is read from YAML by ParseSuite.
type Suite struct {
	// Load is the workload of the measured requests.
	Load Load `yaml:"load" json:"load"`
	// Cases are the quality cases, each sent once per model.
	Cases []Case `yaml:"cases" json:"cases,omitempty"`
}

// Load is the workload of the measured requests: generate calls cycling
// through Prompts, all with Options.
type Load struct {
	// Prompts are sent in turn: request i gets Prompts[i mod len(Prompts)].
	// Default one short prompt (DefaultSuite).
	Prompts []string `yaml:"prompts" json:"prompts"`
	// Options are the Ollama options of every load request. Default
	// {temperature: 0, num_predict: 32}: a fixed answer length keeps
	// latency comparable between runs.
	Options map[string]any `yaml:"options" json:"options,omitempty"`
}

// Message is one chat message of a case.
type Message struct {
	Role    string `yaml:"role" json:"role"`
	Content string `yaml:"content" json:"content"`
}

// Case is one quality check: a request and what its answer must hold.
type Case struct {
	// Name identifies the case in reports; required and unique.
	Name string `yaml:"name" json:"name"`
	// Prompt makes the case a generate call; exactly one of Prompt and
	// Messages is set.
	Prompt string `yaml:"prompt" json:"prompt,omitempty"`
	// System is the system prompt of a generate call.
	System string `yaml:"system" json:"system,omitempty"`
	// Messages make the case a chat call.
	Messages []Message `yaml:"messages" json:"messages,omitempty"`
	// Format is Ollama's format: "json" or a JSON schema (a mapping).
	Format any `yaml:"format" json:"format,omitempty"`
	// Options are Ollama options for this case only.
	Options map[string]any `yaml:"options" json:"options,omitempty"`
	// Expect is what the answer must hold.
	Expect Expect `yaml:"expect" json:"expect"`

	format json.RawMessage
}

// Expect is what an answer must hold for its case to pass. Every check
// that is set must hold.
type Expect struct {
	// Contains are substrings the answer must contain, every one.
	Contains []string `yaml:"contains" json:"contains,omitempty"`
	// NotContains are substrings the answer must not contain.
	NotContains []string `yaml:"not_contains" json:"not_contains,omitempty"`
	// Regex are regular expressions (Go RE2 syntax) the answer must
	// match, every one.
	Regex []string `yaml:"regex" json:"regex,omitempty"`
	// JSONValid requires the whole answer (surrounding white space aside)
	// to be one valid JSON value.
	JSONValid bool `yaml:"json_valid" json:"json_valid,omitempty"`
	// IgnoreCase makes Contains, NotContains and Regex case-insensitive.
	IgnoreCase bool `yaml:"ignore_case" json:"ignore_case,omitempty"`

	res []*regexp.Regexp
}

// DefaultSuite returns the suite used without a suite file: one load
// prompt with the default options and no quality cases.
func DefaultSuite() *Suite {
	s := &Suite{}
	_ = s.prepare()
	return s
}

// LoadSuite reads and checks a suite file (see ParseSuite).
func LoadSuite(path string) (*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSuite(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSuite parses a suite from YAML and checks it. Unknown keys are
// refused (a typo would otherwise silently drop a check). It returns an
// error wrapping ErrSuite that names the case and the problem.
//
//	load:
//	  options: {temperature: 0, num_predict: 32}
//	  prompts: ["Why is the sky blue?"]
//	cases:
//	  - name: capital
//	    prompt: "What is the capital of France? Answer in one word."
//	    options: {temperature: 0}
//	    expect: {contains: [Paris], ignore_case: true}
//	  - name: json
//	    prompt: "Describe a cat as JSON."
//	    format: json
//	    expect: {json_valid: true}
func ParseSuite(b []byte) (*Suite, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Suite
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrSuite, err)
	}
	if err := s.prepare(); err != nil {
		return nil, err
	}
	return &s, nil
}

// prepare fills defaults, compiles the regular expressions and checks
// every case.
func (s *Suite) prepare() error {
	if len(s.Load.Prompts) == 0 {
		s.Load.Prompts = []string{"Write one sentence about the sea."}
	}
	for i, p := range s.Load.Prompts {
		if strings.TrimSpace(p) == "" {
			return fmt.Errorf("%w: load prompt %d is empty", ErrSuite, i+1)
		}
	}
	if s.Load.Options == nil {
		s.Load.Options = map[string]any{"temperature": 0, "num_predict": 32}
	}
	seen := map[string]bool{}
	for i := range s.Cases {
		c := &s.Cases[i]
		if c.Name == "" {
			return fmt.Errorf("%w: case %d has no name", ErrSuite, i+1)
		}
		if seen[c.Name] {
			return fmt.Errorf("%w: case %q appears twice", ErrSuite, c.Name)
		}
		seen[c.Name] = true
		if err := c.prepare(); err != nil {
			return fmt.Errorf("%w: case %q: %v", ErrSuite, c.Name, err)
		}
	}
	return nil
}

func (c *Case) prepare() error {
	switch {
	case c.Prompt == "" && len(c.Messages) == 0:
		return errors.New("needs a prompt or messages")
	case c.Prompt != "" && len(c.Messages) > 0:
		return errors.New("has both a prompt and messages; give one")
	case c.System != "" && len(c.Messages) > 0:
		return errors.New("system is for a prompt; put a system message in messages")
	}
	for i, m := range c.Messages {
		if m.Role == "" || m.Content == "" {
			return fmt.Errorf("message %d needs a role and content", i+1)
		}
	}
	switch f := c.Format.(type) {
	case nil:
	case string:
		if f != "json" {
			return fmt.Errorf(`format %q is not "json" or a JSON schema`, f)
		}
		c.format = json.RawMessage(`"json"`)
	case map[string]any:
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("format schema: %v", err)
		}
		c.format = b
	default:
		return errors.New(`format must be "json" or a JSON schema`)
	}
	e := &c.Expect
	if len(e.Contains)+len(e.NotContains)+len(e.Regex) == 0 && !e.JSONValid {
		return errors.New("expect has no check (contains, not_contains, regex, json_valid)")
	}
	return e.compile()
}

// compile compiles the regular expressions.
func (e *Expect) compile() error {
	e.res = e.res[:0]
	for _, r := range e.Regex {
		if e.IgnoreCase {
			r = "(?i)" + r
		}
		re, err := regexp.Compile(r)
		if err != nil {
			return fmt.Errorf("regex: %v", err)
		}
		e.res = append(e.res, re)
	}
	return nil
}

// Check returns why answer fails the expectations, one reason per failed
// check, or nil when it passes. Regular expressions are compiled by
// ParseSuite; an Expect built by hand has them compiled on first use (a
// bad one is reported as a failure).
func (e *Expect) Check(answer string) []string {
	if len(e.res) != len(e.Regex) {
		if err := e.compile(); err != nil {
			return []string{err.Error()}
		}
	}
	var why []string
	fold := func(s string) string {
		if e.IgnoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	a := fold(answer)
	for _, s := range e.Contains {
		if !strings.Contains(a, fold(s)) {
			why = append(why, fmt.Sprintf("missing %q", s))
		}
	}
	for _, s := range e.NotContains {
		if strings.Contains(a, fold(s)) {
			why = append(why, fmt.Sprintf("contains %q", s))
		}
	}
	for i, re := range e.res {
		if !re.MatchString(answer) {
			why = append(why, fmt.Sprintf("no match for /%s/", e.Regex[i]))
		}
	}
	if e.JSONValid {
		if err := validJSON(answer); err != nil {
			why = append(why, "not valid JSON: "+err.Error())
		}
	}
	return why
}

// validJSON reports whether s is exactly one JSON value.
func validJSON(s string) error {
	dec := json.NewDecoder(strings.NewReader(s))
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty answer")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("text after the JSON value")
	}
	return nil
}

// generate returns the case as a generate request for model, or nil for a
// chat case.
func (c *Case) generate(model string) *api.GenerateRequest {
	if len(c.Messages) > 0 {
		return nil
	}
	return &api.GenerateRequest{Model: model, Prompt: c.Prompt, System: c.System, Format: c.format, Options: c.Options}
}

// chat returns the case as a chat request for model.
func (c *Case) chat(model string) *api.ChatRequest {
	msgs := make([]api.Message, len(c.Messages))
	for i, m := range c.Messages {
		msgs[i] = api.Message{Role: m.Role, Content: m.Content}
	}
	return &api.ChatRequest{Model: model, Messages: msgs, Format: c.format, Options: c.Options}
}

// shorten cuts s to about n bytes on a rune boundary and puts it on one line.
func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", `\n`)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
