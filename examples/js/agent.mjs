// An agent on herd's NATS protocol with the official NATS JavaScript
// packages (docs/protocol.md): a durable publish, recovering an answer by
// its id after a reconnect, and a streamed answer. NATS_URL, HERD_MODEL and
// HERD_AGENT choose the server, the model and the agent's name.
import { connect, createInbox, headers, nuid } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const model = process.env.HERD_MODEL ?? "herd-tiny";
const agent = process.env.HERD_AGENT ?? "js-agent";
const dec = new TextDecoder();

// publish stores a request in HERD_REQ (herd.req.<priority>.<agent>) under
// a scoped id (<agent>=<random>: the id belongs to this agent) with the
// subject its answer goes to. The PubAck means herd has it.
async function publish(nc, body, replyTo) {
  const id = `${agent}=${nuid.next()}`;
  const h = headers();
  h.set("Herd-Reply-To", replyTo);
  const ack = await jetstream(nc).publish(`herd.req.normal.${agent}`, JSON.stringify(body), { headers: h, msgID: id });
  return { id, ack };
}

// answer reads one reply: herd's facts in headers, Ollama's JSON in the body.
function answer(m) {
  return { status: Number(m.headers?.get("Herd-Status")), body: JSON.parse(dec.decode(m.data)) };
}

const prompt = { model, prompt: "hello", options: { num_predict: 8 } };

// 1. Durable publish, answer on our inbox.
let nc = await connect({ servers });
{
  const inbox = createInbox();
  const sub = nc.subscribe(inbox, { max: 1 });
  const { id, ack } = await publish(nc, prompt, inbox);
  for await (const m of sub) {
    const a = answer(m);
    if (a.status !== 200 || !a.body.done) throw new Error(`durable: ${a.status} ${JSON.stringify(a.body)}`);
    console.log(`durable: ${id} seq ${ack.seq} status ${a.status} response ${JSON.stringify(a.body.response)}`);
  }
}

// 2. Recovery: publish, drop the connection before the answer arrives (the
// reply is lost), reconnect and look the outcome up by its id
// (herd.lookup.<agent>.<id>) until herd has one.
{
  const { id } = await publish(nc, { ...prompt, prompt: "remember me" }, createInbox());
  await nc.close();
  nc = await connect({ servers });
  for (let tries = 0; ; tries++) {
    const m = await nc.request(`herd.lookup.${agent}.${id}`, "", { timeout: 5000 });
    if (m.headers?.get("Herd-Status")) {
      const a = answer(m);
      if (a.status !== 200) throw new Error(`recovered: ${a.status} ${JSON.stringify(a.body)}`);
      console.log(`recovered: ${id} after ${tries} lookups, status ${a.status} response ${JSON.stringify(a.body.response)}`);
      break;
    }
    if (tries > 120) throw new Error(`no outcome for ${id}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

// 3. Streaming: Ollama's chunks in order, each with Herd-Seq, the last with
// done: true.
{
  const inbox = createInbox();
  const sub = nc.subscribe(inbox);
  await publish(nc, { ...prompt, prompt: "tell me a story", stream: true, options: { num_predict: 12 } }, inbox);
  let text = "", seqs = [];
  for await (const m of sub) {
    const a = answer(m);
    if (a.status >= 400) throw new Error(`stream: ${a.status} ${JSON.stringify(a.body)}`);
    seqs.push(Number(m.headers.get("Herd-Seq")));
    text += a.body.response ?? "";
    if (a.body.done) break;
  }
  sub.unsubscribe();
  if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1])) throw new Error(`Herd-Seq out of order: ${seqs}`);
  console.log(`stream: ${seqs.length} chunks, Herd-Seq ${seqs[0]}..${seqs.at(-1)}, text ${JSON.stringify(text)}`);
}
await nc.close();
