// Coming back to the page (it is visible again, or the network is back) reopens the
// streams that died meanwhile, from their last event, and leaves the live ones alone.
//
// A sleeping laptop, a suspended phone or a lost network can leave a connection that
// looks alive (readyState OPEN) but is dead. The server writes a `: ping` comment every
// CHAT_SSE_HEARTBEAT seconds while an answer is quiet, but EventSource never shows
// comments to the page, so a quiet live stream (a model thinking for a minute) and a dead
// one look the same: nothing arrives. The rule, with DEAD_AFTER = 2.5 heartbeats:
// - CLOSED: dead (the browser gave up); reopened now, not at the end of its backoff.
// - CONNECTING: the browser is reconnecting by itself and is left to it, unless nothing
//   has connected or arrived for DEAD_AFTER (its attempts go nowhere): then it is dead.
// - OPEN: alive if it brought an event, or connected, within DEAD_AFTER: the connection
//   works. A stream silent for longer is dead only if the page was also away (hidden, or
//   offline) for longer than DEAD_AFTER: connections die unnoticed while the page is away,
//   so a glance at another tab leaves a quiet stream alone, and a stream silent across a
//   long absence (the laptop slept) is reopened. Reopening a live one by mistake costs a
//   request and shows nothing twice: it resumes after its last event id.
// The heartbeat is the page's data-sse-heartbeat-ms, if it says, else the default 15 s.

import { streams } from "./answer-stream.js";

const DEAD_AFTER_HEARTBEATS = 2.5;
const HEARTBEAT_MS = 15000;

let awaySince = document.visibilityState === "hidden" ? Date.now() : null;

function heartbeatMs() {
  const given = Number(document.querySelector("[data-sse-heartbeat-ms]")?.dataset.sseHeartbeatMs);
  return given > 0 ? given : HEARTBEAT_MS;
}

function away() {
  awaySince ??= Date.now();
}

function back() {
  const now = Date.now();
  const awayMs = awaySince === null ? 0 : now - awaySince;
  if (document.visibilityState !== "hidden" && navigator.onLine) awaySince = null;
  const deadAfterMs = DEAD_AFTER_HEARTBEATS * heartbeatMs();
  streams.forEach((stream) => {
    if (stream.dead(now, awayMs, deadAfterMs)) stream.resume();
  });
}

export function watchReturns() {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") back();
    else away();
  });
  window.addEventListener("offline", away);
  window.addEventListener("online", back);
}
