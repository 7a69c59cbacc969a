// The answer stream: a streaming answer is server-rendered as <article class="msg--streaming"
// data-stream-url data-cancel-url data-message-url>. For each one found (on load, and
// after every htmx swap) a native EventSource reads the answer with ?render=blocks:
// `delta` text is kept and shown as text nodes (model output is untrusted: never as
// HTML); a `block` event brings the server's sanitised HTML of a finished Markdown block,
// which replaces that block's text, so only the open block is ever plain text and no
// Markdown is parsed in the browser. The DOM is updated once per animation frame, however
// many events arrive. `reasoning`, `tool_start`, `progress` and `tool_end` go to the
// reasoning block and the tool cards (answer-extras.js). On `done` the bubble is replaced by the server's rendered message
// (GET data-message-url); on `error` too (it shows the error and a Retry button).
// EventSource reconnects by itself with Last-Event-ID; when it gives up, the stream is
// reopened from the last event seen (and reconnect.js reopens one that died unnoticed).

import { AnswerExtras } from "./answer-extras.js";
import { decorate } from "./clipboard.js";
import { updateComposer } from "./composer.js";
import { failed, refresh, RETRY_MAX_MS, RETRY_MIN_MS, settle } from "./finished-answer.js";
import { keepingPlace } from "./scrolling.js";
import { refreshSidebarSoon } from "./sidebar.js";

export const streams = new Map(); // bubble id -> AnswerStream

export function wireAll(root) {
  (root || document).querySelectorAll(".msg--streaming[data-stream-url]").forEach(wire);
  updateComposer();
}

function wire(bubble) {
  if (streams.has(bubble.id) || !bubble.isConnected) return;
  streams.set(bubble.id, new AnswerStream(bubble));
}

// Leaving the page closes the streams.
export function closeAll() {
  streams.forEach((stream) => stream.close());
}

// One answer's stream. EventSource reconnects by itself after a network error; when
// the browser gives up (a 503, a dead network, a laptop waking from sleep) the stream
// is reopened from the last event seen, so the bubble never shows a word twice.
class AnswerStream {
  constructor(bubble) {
    this.bubble = bubble;
    this.rendered = bubble.querySelector("[data-rendered]");
    this.openPart = bubble.querySelector("[data-open]");
    this.reconnecting = bubble.querySelector("[data-reconnecting]");
    this.extras = new AnswerExtras(bubble);
    this.lastId = null; // null: nothing seen yet, the stream replays from the start
    this.text = ""; // every delta's text so far
    this.renderedUpTo = 0; // text before this offset is shown as rendered blocks
    this.shownUpTo = 0; // text before this offset is in the DOM (as blocks or as text)
    this.pendingHtml = []; // blocks received, not yet in the DOM
    this.restart = false; // the DOM still holds the server's text: clear it first
    this.frame = 0;
    this.retryMs = RETRY_MIN_MS;
    this.timer = null;
    this.heardAt = 0; // Date.now() when the stream last (re)connected or brought an event
    this.open();
  }

  open() {
    const url = new URL(this.bubble.dataset.streamUrl, window.location.href);
    url.searchParams.set("render", "blocks");
    if (this.lastId !== null) url.searchParams.set("last_event_id", this.lastId);
    this.heard(); // a connection that never opens has been silent since it was asked for
    this.source = new EventSource(url);
    this.source.addEventListener("open", () => this.heard());
    this.source.addEventListener("delta", (event) => this.delta(event));
    this.source.addEventListener("reasoning", (event) => this.extra(event, "reasoning"));
    this.source.addEventListener("tool_start", (event) => this.extra(event, "toolStart"));
    this.source.addEventListener("progress", (event) => this.extra(event, "progress"));
    this.source.addEventListener("tool_end", (event) => this.extra(event, "toolEnd"));
    this.source.addEventListener("block", (event) => this.block(event));
    this.source.addEventListener("done", (event) => this.done(event));
    this.source.addEventListener("error", (event) => this.error(event));
  }

  // Reopen now from the last event seen (the page is back and the connection is dead).
  resume() {
    clearTimeout(this.timer);
    this.source.close();
    this.open();
  }

  heard() {
    this.heardAt = Date.now();
  }

  // Whether the connection may have died unnoticed, when the reader comes back after
  // `awayMs`; the rule is explained in reconnect.js.
  dead(now, awayMs, deadAfterMs) {
    const silent = now - this.heardAt > deadAfterMs;
    switch (this.source.readyState) {
      case EventSource.CLOSED:
        return true;
      case EventSource.CONNECTING:
        return silent;
      default:
        return silent && awayMs > deadAfterMs;
    }
  }

  seen(event) {
    this.heard();
    this.lastId = event.lastEventId;
    this.retryMs = RETRY_MIN_MS;
    if (this.reconnecting) this.reconnecting.hidden = true;
  }

  // Every numbered event but the last: the first of a full replay rebuilds what the
  // server rendered.
  begin(event) {
    if (this.lastId === null) {
      this.text = "";
      this.renderedUpTo = this.shownUpTo = 0;
      this.pendingHtml = [];
      this.restart = true;
      this.extras.reset();
    }
    this.seen(event);
  }

  delta(event) {
    this.begin(event);
    this.extras.onward();
    this.text += JSON.parse(event.data).content;
    this.schedule();
  }

  extra(event, handler) {
    this.begin(event);
    this.extras[handler](JSON.parse(event.data));
  }

  // A finished block's HTML (no id: it belongs to the delta before it). It is used only
  // if it starts where the rendered part ends; otherwise the final swap fixes things.
  block(event) {
    this.heard();
    const data = JSON.parse(event.data);
    if (data.start !== this.renderedUpTo || data.end > this.text.length) return;
    this.pendingHtml.push(data.html);
    this.renderedUpTo = data.end;
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.paint());
  }

  // One DOM update per frame: new blocks appended, the open block's text brought up to date.
  paint() {
    this.frame = 0;
    if (!this.bubble.isConnected) return;
    keepingPlace(() => {
      if (this.restart) {
        this.rendered.textContent = "";
        this.openPart.textContent = "";
        this.restart = false;
      }
      if (this.pendingHtml.length) {
        // Server-rendered and sanitised (chat/render.py), like the final message.
        const template = document.createElement("template");
        template.innerHTML = this.pendingHtml.join("");
        this.pendingHtml = [];
        decorate(template.content);
        this.rendered.append(template.content);
        this.openPart.textContent = this.text.slice(this.renderedUpTo);
      } else if (this.shownUpTo < this.text.length) {
        this.openPart.append(document.createTextNode(this.text.slice(this.shownUpTo)));
      }
      this.shownUpTo = this.text.length;
    });
  }

  async done(event) {
    this.seen(event);
    this.close();
    await settle(this.bubble);
    refreshSidebarSoon();
  }

  async error(event) {
    if (event instanceof MessageEvent && typeof event.data === "string") {
      // The server's own `error` event: the answer failed; the text so far is stored.
      this.seen(event);
      this.close();
      let message = "Something went wrong while answering.";
      try {
        message = JSON.parse(event.data).message || message;
      } catch (_) {
        // keep the generic message
      }
      // The stored message shows the error with a Retry button; failing that, say it here.
      if ((await refresh(this.bubble)) === "streaming") failed(this.bubble, message);
      refreshSidebarSoon();
      return;
    }
    if (this.reconnecting) this.reconnecting.hidden = false;
    if (this.source.readyState === EventSource.CLOSED) this.givenUp();
  }

  // The browser stopped reconnecting: the answer ended (204), or the server refused
  // for now. The stored message tells which.
  async givenUp() {
    const state = await refresh(this.bubble);
    if (state === "streaming") {
      this.timer = setTimeout(() => this.resume(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    } else {
      this.close();
    }
  }

  close() {
    clearTimeout(this.timer);
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.source.close();
    streams.delete(this.bubble.id);
  }
}
