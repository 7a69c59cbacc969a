// Drives the site's AI SDK endpoint with the AI SDK's own DefaultChatTransport and
// readUIMessageStream, which check every chunk against the SDK's schema.
// Usage: node ui_client.mjs <scenario>; SITE (the site's root) and API_KEY from the
// environment, the scenario's options as JSON on stdin. Prints one JSON object.
import { DefaultChatTransport, readUIMessageStream } from "ai";

import { run } from "./harness.mjs";

const site = process.env.SITE;
const headers = { Authorization: `Bearer ${process.env.API_KEY}` };
const transport = new DefaultChatTransport({ api: `${site}/api/ui/chat`, headers });

function userMessage(text) {
  return { id: `u-${Date.now()}`, role: "user", parts: [{ type: "text", text }] };
}

// Read a chunk stream to its end: the chunks' types, and the message they build.
async function read(stream, { stopAfter = null, chatId = null } = {}) {
  const [forChunks, forMessage] = stream.tee();
  const types = [];
  const chunks = [];
  const reading = (async () => {
    const reader = forChunks.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      types.push(value.type);
      chunks.push(value);
      if (stopAfter !== null && types.length === stopAfter) {
        await fetch(`${site}/api/ui/chat/${chatId}/stop`, { method: "POST", headers });
      }
    }
  })();
  let message = null;
  const errors = [];
  for await (const snapshot of readUIMessageStream({ stream: forMessage, onError: (e) => errors.push(e.message) })) {
    message = snapshot;
  }
  await reading;
  return { types, chunks, message, errors };
}

async function send({ chatId, text, trigger = "submit-message", stopAfter = null, cutAfter = null }) {
  const abort = new AbortController();
  const messages = trigger === "submit-message" ? [userMessage(text)] : [];
  const stream = await transport.sendMessages({
    chatId,
    messages,
    trigger,
    messageId: undefined,
    abortSignal: abort.signal,
  });
  if (cutAfter === null) return read(stream, { stopAfter, chatId });
  // Read some chunks, drop the connection, then resume as a reload would.
  const reader = stream.getReader();
  const before = [];
  while (before.length < cutAfter) before.push((await reader.read()).value.type);
  abort.abort();
  const resumed = await transport.reconnectToStream({ chatId });
  return { before, ...(await read(resumed)) };
}

async function resume({ chatId }) {
  const stream = await transport.reconnectToStream({ chatId });
  return stream === null ? { resumed: null } : read(stream);
}

// The transport throws the site's refusal (its JSON error) as the error's message.
await run({ send, resume }, (error) => ({ thrown: String(error.message ?? error) }));
