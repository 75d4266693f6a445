package client

import (
	"encoding/json"
	"errors"
	"strings"
)

// errNotContinued is returned by rest when an answer does not continue the
// text already streamed to the caller (another run of the request, sampled
// anew, was the one stored).
var errNotContinued = errors.New("the stored answer does not continue the streamed text")

// rest returns the final chunk to give a streaming caller that received
// the chunks streamed and then lost the stream, when the whole answer is
// found stored (a lookup): the answer with its text cut to what the
// caller has not seen, so the chunks still add up to the answer. Text is
// Ollama's "response" (generate) or "message"."content" (chat).
func rest(streamed [][]byte, whole []byte) ([]byte, error) {
	var seen strings.Builder
	calls := 0
	for _, c := range streamed {
		t, _, err := textOf(c)
		if err != nil {
			return nil, err
		}
		seen.WriteString(t)
		calls += toolCalls(c)
	}
	t, set, err := textOf(whole)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(t, seen.String()) {
		return nil, errNotContinued
	}
	b, err := set(t[seen.Len():])
	if err != nil || calls == 0 {
		return b, err
	}
	return dropCalls(b, calls)
}

// toolCalls counts the tool calls in a chat chunk (none in generate's).
func toolCalls(b []byte) int {
	var c struct {
		Message struct {
			ToolCalls []json.RawMessage `json:"tool_calls"`
		} `json:"message"`
	}
	_ = json.Unmarshal(b, &c)
	return len(c.Message.ToolCalls)
}

// dropCalls removes the first n tool calls of a chat answer: the caller
// received them in streamed chunks.
func dropCalls(b []byte, n int) ([]byte, error) {
	var top, msg map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(top["message"], &msg); err != nil {
		return nil, err
	}
	var calls []json.RawMessage
	_ = json.Unmarshal(msg["tool_calls"], &calls)
	if n >= len(calls) {
		delete(msg, "tool_calls")
	} else {
		msg["tool_calls"], _ = json.Marshal(calls[n:])
	}
	top["message"], _ = json.Marshal(msg)
	return json.Marshal(top)
}

// textOf returns the text of one generate or chat answer or chunk, and a
// function that returns the answer with its text replaced.
func textOf(b []byte) (string, func(string) ([]byte, error), error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return "", nil, err
	}
	field := func(obj map[string]json.RawMessage, k string) (string, error) {
		var s string
		if raw, ok := obj[k]; ok {
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", err
			}
		}
		return s, nil
	}
	if raw, ok := top["message"]; ok {
		var msg map[string]json.RawMessage
		if err := json.Unmarshal(raw, &msg); err != nil {
			return "", nil, err
		}
		s, err := field(msg, "content")
		return s, func(t string) ([]byte, error) {
			msg["content"], _ = json.Marshal(t)
			top["message"], _ = json.Marshal(msg)
			return json.Marshal(top)
		}, err
	}
	s, err := field(top, "response")
	return s, func(t string) ([]byte, error) {
		top["response"], _ = json.Marshal(t)
		return json.Marshal(top)
	}, err
}
