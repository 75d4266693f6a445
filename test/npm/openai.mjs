// Drives the official openai npm client, unmodified, against
// HERD_URL/v1: chat completion, streaming with usage, embeddings, models
// list, and an unknown model surfacing as the client's own NotFoundError.
// Prints one JSON line of what it saw; exits 1 on the first failure.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const model = process.env.HERD_MODEL ?? 'herd-tiny';
const client = new OpenAI({ baseURL: `${process.env.HERD_URL}/v1`, apiKey: process.env.HERD_KEY ?? 'unused', maxRetries: 0 });
const messages = [{ role: 'user', content: 'tell me a story' }];
const seen = {};

const cc = await client.chat.completions.create({ model, messages, max_tokens: 16 });
assert.equal(cc.object, 'chat.completion');
assert.equal(cc.choices[0].message.role, 'assistant');
assert.equal(typeof cc.choices[0].message.content, 'string');
assert.ok(cc.usage.total_tokens > 0);
seen.chat = { finish_reason: cc.choices[0].finish_reason, usage: cc.usage };

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 16, stream: true, stream_options: { include_usage: true },
});
let chunks = 0;
let usage;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
}
assert.ok(chunks > 2, `${chunks} chunks`);
assert.ok(usage && usage.total_tokens > 0, 'a usage chunk');
seen.stream = { chunks, usage };

// The client asks for base64 and decodes it itself.
const emb = await client.embeddings.create({ model, input: ['a sentence', 'another one'] });
assert.equal(emb.data.length, 2);
assert.ok(Array.isArray(emb.data[0].embedding) && emb.data[0].embedding.length > 0);
seen.embeddings = { vectors: emb.data.length, dims: emb.data[0].embedding.length };

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.some((id) => id === model || id === `${model}:latest`), JSON.stringify(models));
seen.models = models;

try {
  await client.chat.completions.create({ model: 'no-such-model', messages });
  assert.fail('an unknown model answered');
} catch (err) {
  assert.ok(err instanceof OpenAI.NotFoundError, `${err?.constructor?.name}: ${err}`);
  assert.equal(err.status, 404);
  assert.equal(err.code, 'model_not_found');
  seen.unknownModel = { error: err.constructor.name, status: err.status, code: err.code };
}

console.log(JSON.stringify(seen));
