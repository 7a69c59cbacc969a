// The chat page's script: streams answers into their bubbles, and drives the composer.
//
// A streaming answer is server-rendered as <article class="msg--streaming"
// data-stream-url data-cancel-url data-message-url>. For each one found (on load, and
// after every htmx swap) a native EventSource reads the answer: `delta` text is appended
// as text nodes (model output is untrusted: never as HTML); on `done` the bubble is
// replaced by the server's rendered message (GET data-message-url); on `error` the
// message is shown under the text so far. EventSource reconnects by itself with
// Last-Event-ID; when it gives up, the stream is reopened from the last event seen.
(() => {
  "use strict";

  const NEAR_BOTTOM_PX = 48;
  const streams = new Map(); // bubble id -> AnswerStream

  const scroller = () => document.getElementById("scroller");
  const composer = () => document.getElementById("composer");

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // Scrolling: follow the answer only while the reader is at the bottom.

  function atBottom() {
    const box = scroller();
    return !box || box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
  }

  function toBottom() {
    const box = scroller();
    if (box) box.scrollTop = box.scrollHeight;
  }

  // Keep the reader's place across a change, or stay at the bottom if they were there.
  function keepingPlace(change) {
    const box = scroller();
    const follow = atBottom();
    const top = box ? box.scrollTop : 0;
    change();
    if (follow) toBottom();
    else if (box) box.scrollTop = top;
  }

  // Streaming bubbles.

  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;

  function wireAll(root) {
    (root || document).querySelectorAll(".msg--streaming[data-stream-url]").forEach(wire);
    updateComposer();
  }

  function wire(bubble) {
    if (streams.has(bubble.id) || !bubble.isConnected) return;
    streams.set(bubble.id, new AnswerStream(bubble));
  }

  // One answer's stream. EventSource reconnects by itself after a network error; when
  // the browser gives up (a 503, a dead network, a laptop waking from sleep) the stream
  // is reopened from the last event seen, so the bubble never shows a word twice.
  class AnswerStream {
    constructor(bubble) {
      this.bubble = bubble;
      this.text = bubble.querySelector(".msg__stream");
      this.reconnecting = bubble.querySelector("[data-reconnecting]");
      this.lastId = null; // null: nothing seen yet, the stream replays from the start
      this.retryMs = RETRY_MIN_MS;
      this.timer = null;
      this.open();
    }

    open() {
      const url = new URL(this.bubble.dataset.streamUrl, window.location.href);
      if (this.lastId !== null) url.searchParams.set("last_event_id", this.lastId);
      this.source = new EventSource(url);
      this.source.addEventListener("delta", (event) => this.delta(event));
      this.source.addEventListener("done", (event) => this.done(event));
      this.source.addEventListener("error", (event) => this.error(event));
    }

    // Reopen now from the last event seen (the tab is visible again, the network is back).
    resume() {
      clearTimeout(this.timer);
      this.source.close();
      this.open();
    }

    seen(event) {
      this.lastId = event.lastEventId;
      this.retryMs = RETRY_MIN_MS;
      if (this.reconnecting) this.reconnecting.hidden = true;
    }

    delta(event) {
      const replay = this.lastId === null;
      this.seen(event);
      const data = JSON.parse(event.data);
      keepingPlace(() => {
        // The first event of a full replay rebuilds the text the server rendered.
        if (replay) this.text.textContent = "";
        this.text.append(document.createTextNode(data.content));
      });
    }

    async done(event) {
      this.seen(event);
      this.close();
      if ((await refresh(this.bubble)) === "streaming") {
        setTimeout(() => refresh(this.bubble), RETRY_MIN_MS); // the fetch itself failed
      }
    }

    error(event) {
      if (event instanceof MessageEvent && typeof event.data === "string") {
        // The server's own `error` event: the answer failed. Keep the text so far.
        this.seen(event);
        this.close();
        let message = "Something went wrong while answering.";
        try {
          message = JSON.parse(event.data).message || message;
        } catch (_) {
          // keep the generic message
        }
        failed(this.bubble, message);
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
      this.source.close();
      streams.delete(this.bubble.id);
    }
  }

  function ended(bubble) {
    bubble.classList.remove("msg--streaming");
    bubble.removeAttribute("data-stream-url");
    const actions = bubble.querySelector(".msg__actions");
    if (actions) actions.remove();
    const reconnecting = bubble.querySelector("[data-reconnecting]");
    if (reconnecting) reconnecting.hidden = true;
    updateComposer();
  }

  function failed(bubble, message) {
    const box = bubble.querySelector("[data-error]");
    keepingPlace(() => {
      if (box) {
        box.textContent = message;
        box.hidden = false;
        box.setAttribute("role", "alert");
      }
      ended(bubble);
    });
  }

  // Swap a finished bubble for the server's rendering of the message (Markdown).
  // Returns "streaming" while the stored answer is still being written, so the caller
  // keeps streaming; "offline" when the server could not be reached.
  async function refresh(bubble) {
    let fresh = null;
    try {
      const response = await fetch(bubble.dataset.messageUrl, {
        headers: { Accept: "text/html" },
        credentials: "same-origin",
      });
      if (!response.ok && response.status >= 500) return "streaming";
      if (response.ok) {
        const template = document.createElement("template");
        template.innerHTML = (await response.text()).trim(); // server-rendered, sanitised
        fresh = template.content.firstElementChild;
      }
    } catch (_) {
      return "streaming"; // offline: try again later
    }
    // Anything but a message (say, the login page after a redirect) is not swapped in.
    if (!fresh || !fresh.matches("article.msg")) {
      failed(bubble, "Could not load the finished answer. Reload the page to see it.");
      return "failed";
    }
    if (fresh.classList.contains("msg--streaming")) return "streaming";
    keepingPlace(() => bubble.replaceWith(fresh));
    updateComposer();
    return "finished";
  }

  // A sleeping laptop or a backgrounded phone leaves connections that look alive but are
  // dead: reopen every stream when the page is visible again or the network comes back.
  function resumeAll() {
    streams.forEach((stream) => stream.resume());
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") resumeAll();
  });
  window.addEventListener("online", resumeAll);

  async function cancel(button) {
    const bubble = button.closest(".msg");
    button.disabled = true;
    button.lastChild.textContent = " Stopping…";
    try {
      const response = await fetch(bubble.dataset.cancelUrl, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(String(response.status));
      // The stream ends with `done` (finish_reason "cancelled") and the bubble is swapped.
    } catch (_) {
      button.disabled = false;
      button.lastChild.textContent = " Stop";
    }
  }

  // The composer: Enter sends, Shift+Enter is a new line; no sending while an answer streams.

  function busy() {
    return document.querySelector(".msg--streaming") !== null;
  }

  function updateComposer() {
    const form = composer();
    if (!form) return;
    const send = form.querySelector(".composer__send");
    const waiting = busy() || form.classList.contains("is-sending");
    form.classList.toggle("is-busy", waiting);
    if (send) {
      send.disabled = waiting;
      send.title = waiting ? "Wait for the answer to finish, or stop it" : "";
    }
  }

  const growsByItself = window.CSS && CSS.supports("field-sizing", "content");

  function autoGrow(textarea) {
    if (growsByItself) return;
    textarea.style.height = "auto";
    textarea.style.height = `${textarea.scrollHeight}px`;
  }

  document.addEventListener("keydown", (event) => {
    const textarea = event.target;
    if (!(textarea instanceof HTMLTextAreaElement) || !textarea.closest("#composer")) return;
    if (event.key !== "Enter" || event.shiftKey || event.altKey || event.isComposing) return;
    event.preventDefault();
    if (!busy() && textarea.value.trim()) textarea.form.requestSubmit();
  });

  document.addEventListener("input", (event) => {
    if (event.target instanceof HTMLTextAreaElement) autoGrow(event.target);
  });

  // Capture phase: runs before htmx's own submit listener on the form.
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (form.id !== "composer") return;
      if (busy() || form.classList.contains("is-sending")) {
        event.preventDefault();
        event.stopImmediatePropagation();
        return;
      }
      const errors = document.getElementById("composer-errors");
      if (errors) errors.textContent = "";
      // With htmx the request goes on in place; without it the page simply navigates.
      if (window.htmx) {
        form.classList.add("is-sending");
        updateComposer();
      }
    },
    true,
  );

  document.addEventListener("htmx:after:request", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
    const status = event.detail?.ctx?.response?.status ?? 0;
    if (status >= 200 && status < 300) {
      const textarea = form.querySelector("textarea");
      textarea.value = "";
      textarea.removeAttribute("aria-invalid");
      autoGrow(textarea);
    } else if (status >= 400) {
      form.querySelector("textarea")?.setAttribute("aria-invalid", "true");
    }
  });

  document.addEventListener("htmx:finally:request", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
    form.classList.remove("is-sending");
    updateComposer();
  });

  document.addEventListener("htmx:error", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
    const errors = document.getElementById("composer-errors");
    if (errors) errors.textContent = "The message could not be sent. Check your connection and try again.";
  });

  // A logged-out session answers a post with a redirect to the login page, which fetch
  // follows: go there instead of swapping the login page into the transcript.
  document.addEventListener("htmx:before:swap", (event) => {
    const response = event.detail?.ctx?.response?.raw;
    if (response && response.redirected) {
      event.preventDefault();
      window.location.assign(response.url);
    }
  });

  // New content from htmx (the posted message and its streaming answer).
  document.addEventListener("htmx:after:swap", (event) => {
    const target = event.detail?.ctx?.target;
    if (target && target.id === "transcript") toBottom();
    wireAll(document);
  });

  // Clicks: the Stop button, and the sidebar toggle on narrow screens.
  document.addEventListener("click", (event) => {
    const stopButton = event.target.closest("[data-stop]");
    if (stopButton) {
      cancel(stopButton);
      return;
    }
    const opener = event.target.closest("[data-sidebar-open]");
    const closer = event.target.closest("[data-sidebar-close]");
    if (opener || closer) {
      event.preventDefault();
      setSidebar(Boolean(opener));
    } else if (document.body.classList.contains("sidebar-open") && !event.target.closest("#sidebar")) {
      setSidebar(false); // a click on the dimmed page beside the open sidebar
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) setSidebar(false);
  });

  function setSidebar(open) {
    document.body.classList.toggle("sidebar-open", open);
    document.querySelectorAll("[data-sidebar-open]").forEach((opener) => {
      opener.setAttribute("aria-expanded", String(open));
    });
    if (open) document.querySelector("#sidebar .convs__link, #sidebar a")?.focus();
  }

  // Start: the page may already hold a streaming answer (a reload, or just redirected).
  document.documentElement.classList.add("js");
  document.querySelectorAll("#composer textarea").forEach(autoGrow);
  toBottom();
  wireAll(document);
  // Leaving the page closes the streams; coming back from the back/forward cache reopens them.
  window.addEventListener("pagehide", () => {
    streams.forEach((stream) => stream.close());
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) wireAll(document);
  });
})();
