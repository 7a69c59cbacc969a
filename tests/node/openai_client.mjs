// Drives the site's OpenAI-compatible endpoint with the official `openai` npm package.
// Usage: node openai_client.mjs <scenario>; BASE_URL and API_KEY from the environment,
// the request as JSON on stdin. Prints one JSON object: what the SDK gave, or the name of
// the error class it raised.
import OpenAI from "openai";

import { run } from "./harness.mjs";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });

async function stream(request) {
  const chunks = await client.chat.completions.create({
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  let finishReason = null;
  const toolCalls = [];
  for await (const chunk of chunks) {
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    text += choice.delta.content ?? "";
    for (const call of choice.delta.tool_calls ?? []) toolCalls.push(call);
    finishReason = choice.finish_reason ?? finishReason;
  }
  return { text, usage, finishReason, toolCalls };
}

async function complete(request) {
  const completion = await client.chat.completions.create(request);
  const choice = completion.choices[0];
  return {
    text: choice.message.content,
    usage: completion.usage,
    finishReason: choice.finish_reason,
    toolCalls: choice.message.tool_calls ?? [],
    object: completion.object,
  };
}

async function models() {
  const page = await client.models.list();
  return { ids: page.data.map((model) => model.id) };
}

await run({ stream, complete, models }, (error) =>
  error instanceof OpenAI.APIError
    ? { error: error.constructor.name, status: error.status, code: error.code }
    : undefined,
);
