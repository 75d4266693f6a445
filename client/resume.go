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
	for _, c := range streamed {
		t, _, err := textOf(c)
		if err != nil {
			return nil, err
		}
		seen.WriteString(t)
	}
	t, set, err := textOf(whole)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(t, seen.String()) {
		return nil, errNotContinued
	}
	return set(t[seen.Len():])
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
