// Drives the official ollama npm client, unmodified, against HERD_URL:
// generate, chat, streaming chat, embed, list. Prints one JSON line of
// what it saw; exits 1 on the first failure.
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';

const model = process.env.HERD_MODEL ?? 'herd-tiny';
const ollama = new Ollama({ host: process.env.HERD_URL });
const options = { num_predict: 16 };
const messages = [{ role: 'user', content: 'tell me a story' }];
const seen = {};

const g = await ollama.generate({ model, prompt: 'hello', options });
assert.equal(g.done, true);
assert.equal(typeof g.response, 'string');
seen.generate = { done_reason: g.done_reason, eval_count: g.eval_count };

const c = await ollama.chat({ model, messages, options });
assert.equal(c.message.role, 'assistant');
assert.equal(c.done, true);
seen.chat = { done_reason: c.done_reason };

let parts = 0;
let last;
for await (const part of await ollama.chat({ model, messages, options, stream: true })) {
  parts++;
  last = part;
}
assert.ok(parts > 1, `a stream of ${parts} parts`);
assert.equal(last.done, true);
seen.streamingChat = { parts };

const e = await ollama.embed({ model, input: ['a sentence', 'another one'] });
assert.equal(e.embeddings.length, 2);
assert.ok(e.embeddings[0].length > 0);
seen.embed = { vectors: e.embeddings.length, dims: e.embeddings[0].length };

const l = await ollama.list();
assert.ok(l.models.some((m) => m.name === model || m.name === `${model}:latest`), JSON.stringify(l.models));
seen.list = l.models.map((m) => m.name);

console.log(JSON.stringify(seen));
