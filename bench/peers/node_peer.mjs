// The Node peer: the same feature written the way the Next.js tutorials write it, with
// Node's own `http` module and global `fetch`, no packages. POST /messages starts the
// answer into an in-memory log; GET /stream/:id streams the log as SSE with pings.
// No accounts, no database. The same interface as starlette_peer.py: event ids are
// positions in the log, and a reconnection (Last-Event-ID) is sent the whole log again.
//
//   OPENAI_BASE_URL=... PEER_MODEL=... PORT=8001 node bench/peers/node_peer.mjs

import { randomUUID } from "node:crypto";
import http from "node:http";

const BASE_URL = process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1";
const API_KEY = process.env.OPENAI_API_KEY ?? "";
const MODEL = process.env.PEER_MODEL ?? "gpt-4o-mini";
const HEARTBEAT_MS = Number(process.env.PEER_HEARTBEAT ?? 15) * 1000;
const PORT = Number(process.env.PORT ?? 8001);
const HOST = process.env.HOST ?? "127.0.0.1";
const KEEP_FINISHED_MS = 60_000; // how long a finished answer's log stays for late readers

const logs = new Map(); // id -> { deltas: string[], finished: boolean, readers: Set<fn> }

function changed(log) {
  for (const reader of log.readers) reader();
}

async function produce(id, content) {
  const log = logs.get(id);
  try {
    const response = await fetch(`${BASE_URL}/chat/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content }], stream: true }),
    });
    if (!response.ok) throw new Error(`upstream answered ${response.status}`);
    let buffer = "";
    for await (const text of response.body.pipeThrough(new TextDecoderStream())) {
      const lines = (buffer + text).split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const delta = JSON.parse(line.slice(6)).choices[0]?.delta?.content;
        if (delta) {
          log.deltas.push(delta);
          changed(log);
        }
      }
    }
  } catch (error) {
    console.error(`answer ${id} failed:`, error);
  } finally {
    log.finished = true;
    changed(log);
    setTimeout(() => logs.delete(id), KEEP_FINISHED_MS);
  }
}

function sendJson(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

async function postMessage(req, res) {
  let body = "";
  req.setEncoding("utf8");
  for await (const chunk of req) body += chunk;
  const { content } = JSON.parse(body);
  const id = randomUUID().replaceAll("-", "");
  logs.set(id, { deltas: [], finished: false, readers: new Set() });
  produce(id, content);
  sendJson(res, 202, { id, stream_url: `/stream/${id}` });
}

function stream(req, res, log) {
  res.writeHead(200, {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    Connection: "keep-alive",
  });
  let position = 0;
  const ping = setInterval(() => res.write(": ping\n\n"), HEARTBEAT_MS);
  const stop = () => {
    clearInterval(ping);
    log.readers.delete(flush);
  };
  const flush = () => {
    while (position < log.deltas.length) {
      const data = JSON.stringify({ content: log.deltas[position] });
      position += 1;
      res.write(`id: ${position}\nevent: delta\ndata: ${data}\n\n`);
    }
    if (log.finished) {
      res.end(`id: ${position + 1}\nevent: done\ndata: {}\n\n`);
      stop();
    }
  };
  log.readers.add(flush);
  res.on("close", stop);
  flush();
}

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url, "http://localhost");
    const key = pathname.match(/^\/stream\/([^/]+)$/)?.[1];
    if (req.method === "POST" && pathname === "/messages") {
      await postMessage(req, res);
    } else if (req.method === "GET" && key !== undefined) {
      const log = logs.get(key);
      if (log) stream(req, res, log);
      else sendJson(res, 404, { error: "not found" });
    } else {
      sendJson(res, 404, { error: "not found" });
    }
  } catch (error) {
    console.error(error);
    if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
  }
});

server.listen({ host: HOST, port: PORT, backlog: 4096 });
