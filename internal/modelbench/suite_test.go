package modelbench

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		expect Expect
		answer string
		why    []string
	}{
		{"contains all", Expect{Contains: []string{"Paris", "France"}}, "Paris is in France.", nil},
		{"contains one missing", Expect{Contains: []string{"Paris", "Lyon"}}, "Paris is in France.", []string{`missing "Lyon"`}},
		{"contains is case-sensitive", Expect{Contains: []string{"paris"}}, "Paris", []string{`missing "paris"`}},
		{"ignore case", Expect{Contains: []string{"paris"}, IgnoreCase: true}, "PARIS", nil},
		{"not contains", Expect{NotContains: []string{"sorry"}}, "I am sorry", []string{`contains "sorry"`}},
		{"regex", Expect{Regex: []string{`\b42\b`}}, "it is 42.", nil},
		{"regex fails", Expect{Regex: []string{`\b42\b`}}, "it is 420", []string{`no match for /\b42\b/`}},
		{"regex ignore case", Expect{Regex: []string{`^yes`}, IgnoreCase: true}, "YES", nil},
		{"json object", Expect{JSONValid: true}, ` {"a": [1, 2]}` + "\n", nil},
		{"json scalar", Expect{JSONValid: true}, `true`, nil},
		{"json cut short", Expect{JSONValid: true}, `{"a": [1, 2`, []string{"not valid JSON: unexpected EOF"}},
		{"json with prose", Expect{JSONValid: true}, `{"a": 1} hope this helps`, []string{"not valid JSON: text after the JSON value"}},
		{"json empty", Expect{JSONValid: true}, "  ", []string{"not valid JSON: empty answer"}},
		{"every failure listed", Expect{Contains: []string{"x"}, Regex: []string{"y"}, JSONValid: true}, "z",
			[]string{`missing "x"`, "no match for /y/"}},
		{"bad regex built by hand", Expect{Regex: []string{"("}}, "", []string{"regex: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.expect.Check(tt.answer)
			if len(got) < len(tt.why) || (len(tt.why) == 0) != (len(got) == 0) {
				t.Fatalf("Check(%q) = %q, want %q", tt.answer, got, tt.why)
			}
			for i, w := range tt.why {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("Check(%q)[%d] = %q, want %q", tt.answer, i, got[i], w)
				}
			}
		})
	}
}

func TestParseSuite(t *testing.T) {
	s, err := ParseSuite([]byte(`
cases:
  - name: schema
    prompt: hi
    format: {type: object, properties: {a: {type: boolean}}}
    expect: {json_valid: true}
  - name: chat
    messages: [{role: user, content: hi}]
    format: json
    expect: {regex: ['^\d+$']}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Load.Prompts) != 1 || s.Load.Options["num_predict"] != 32 {
		t.Errorf("load %+v, want the default prompt and options", s.Load)
	}
	if g := s.Cases[0].generate("m"); g == nil || string(g.Format) != `{"properties":{"a":{"type":"boolean"}},"type":"object"}` {
		t.Errorf("schema case request %+v, want the schema as format", g)
	}
	if c := s.Cases[1].chat("m"); s.Cases[1].generate("m") != nil || string(c.Format) != `"json"` || c.Messages[0].Content != "hi" {
		t.Errorf("chat case request %+v, want a chat call with format json", c)
	}

	bad := []struct{ name, yaml, want string }{
		{"unknown key", "cases: [{name: a, prompt: b, expect: {contain: [x]}}]", "field contain not found"},
		{"no name", "cases: [{prompt: b, expect: {json_valid: true}}]", "case 1 has no name"},
		{"duplicate", "cases: [{name: a, prompt: b, expect: {json_valid: true}}, {name: a, prompt: c, expect: {json_valid: true}}]", `"a" appears twice`},
		{"no prompt", "cases: [{name: a, expect: {json_valid: true}}]", "needs a prompt or messages"},
		{"both", "cases: [{name: a, prompt: b, messages: [{role: user, content: c}], expect: {json_valid: true}}]", "both a prompt and messages"},
		{"no check", "cases: [{name: a, prompt: b}]", "expect has no check"},
		{"bad regex", "cases: [{name: a, prompt: b, expect: {regex: ['(']}}]", "regex: "},
		{"bad format", "cases: [{name: a, prompt: b, format: xml, expect: {json_valid: true}}]", `format "xml"`},
		{"empty load prompt", "load: {prompts: ['']}", "load prompt 1 is empty"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSuite([]byte(tt.yaml))
			if !errors.Is(err, ErrSuite) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseSuite = %v, want ErrSuite saying %q", err, tt.want)
			}
		})
	}
}

// TestShippedSuite: config/prompts.yaml parses and has mechanical cases
// that any model passes.
func TestShippedSuite(t *testing.T) {
	s, err := LoadSuite("../../config/prompts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range s.Cases {
		names = append(names, c.Name)
	}
	if len(s.Load.Prompts) < 2 || !slices.Contains(names, "json-schema-boolean") || !slices.Contains(names, "capital") {
		t.Errorf("suite: %d load prompts, cases %v", len(s.Load.Prompts), names)
	}
}
