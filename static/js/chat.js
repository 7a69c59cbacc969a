// The chat page's script: streams answers into their bubbles, and drives the composer.
//
// A streaming answer is server-rendered as <article class="msg--streaming"
// data-stream-url data-cancel-url data-message-url>. For each one found (on load, and
// after every htmx swap) a native EventSource reads the answer with ?render=blocks:
// `delta` text is kept and shown as text nodes (model output is untrusted: never as
// HTML); a `block` event brings the server's sanitised HTML of a finished Markdown block,
// which replaces that block's text, so only the open block is ever plain text and no
// Markdown is parsed in the browser. The DOM is updated once per animation frame, however
// many events arrive. On `done` the bubble is replaced by the server's rendered message
// (GET data-message-url); on `error` too (it shows the error and a Retry button).
// EventSource reconnects by itself with Last-Event-ID; when it gives up, the stream is
// reopened from the last event seen.
//
// Also here: Copy buttons (code blocks, answers), keyboard shortcuts (Enter sends,
// Shift+Enter new line, Escape stops, Ctrl/Cmd+Shift+O new chat), "jump to latest",
// the sidebar's menus, and refreshing the sidebar when an answer ends (new titles).
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
    updateJump();
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
      this.rendered = bubble.querySelector("[data-rendered]");
      this.openPart = bubble.querySelector("[data-open]");
      this.reconnecting = bubble.querySelector("[data-reconnecting]");
      this.lastId = null; // null: nothing seen yet, the stream replays from the start
      this.text = ""; // every delta's text so far
      this.renderedUpTo = 0; // text before this offset is shown as rendered blocks
      this.shownUpTo = 0; // text before this offset is in the DOM (as blocks or as text)
      this.pendingHtml = []; // blocks received, not yet in the DOM
      this.restart = false; // the DOM still holds the server's text: clear it first
      this.frame = 0;
      this.retryMs = RETRY_MIN_MS;
      this.timer = null;
      this.open();
    }

    open() {
      const url = new URL(this.bubble.dataset.streamUrl, window.location.href);
      url.searchParams.set("render", "blocks");
      if (this.lastId !== null) url.searchParams.set("last_event_id", this.lastId);
      this.source = new EventSource(url);
      this.source.addEventListener("delta", (event) => this.delta(event));
      this.source.addEventListener("block", (event) => this.block(event));
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
      if (this.lastId === null) {
        // The first event of a full replay rebuilds the text the server rendered.
        this.text = "";
        this.renderedUpTo = this.shownUpTo = 0;
        this.pendingHtml = [];
        this.restart = true;
      }
      this.seen(event);
      this.text += JSON.parse(event.data).content;
      this.schedule();
    }

    // A finished block's HTML (no id: it belongs to the delta before it). It is used only
    // if it starts where the rendered part ends; otherwise the final swap fixes things.
    block(event) {
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

  // The answer has ended and is stored: swap in its rendering, trying again with backoff
  // while the server is out of reach. The streamed text stays on screen meanwhile; if
  // the server never answers, the bubble at least stops looking live.
  async function settle(bubble, delay = RETRY_MIN_MS) {
    if ((await refresh(bubble)) !== "streaming") return;
    if (delay > RETRY_MAX_MS) {
      keepingPlace(() => ended(bubble));
      return;
    }
    setTimeout(() => settle(bubble, delay * 2), delay);
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
    decorate(fresh);
    keepingPlace(() => bubble.replaceWith(fresh));
    updateComposer();
    return "finished";
  }

  // The sidebar: titles are written shortly after a first answer, so the list is fetched
  // again when an answer ends and once more a little later. Not while a menu is open
  // (the user may be renaming).

  const SIDEBAR_AGAIN_MS = 1500;

  function refreshSidebarSoon() {
    refreshSidebar();
    setTimeout(refreshSidebar, SIDEBAR_AGAIN_MS);
  }

  async function refreshSidebar() {
    const list = document.querySelector("[data-sidebar-list]");
    const url = document.querySelector("[data-sidebar-url]")?.dataset.sidebarUrl;
    if (!list || !url || list.querySelector("details[open]")) return;
    const query = new URLSearchParams();
    const search = document.getElementById("sidebar-search");
    if (search && search.value) query.set("q", search.value);
    const current = document.querySelector("#sidebar input[name=current]");
    if (current) query.set("current", current.value);
    try {
      const response = await fetch(`${url}?${query}`, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const template = document.createElement("template");
      template.innerHTML = (await response.text()).trim();
      const fresh = template.content.firstElementChild;
      const now = document.querySelector("[data-sidebar-list]");
      if (!fresh || !fresh.matches("[data-sidebar-list]") || !now || now.querySelector("details[open]")) return;
      now.replaceWith(fresh);
    } catch (_) {
      return; // offline: the next answer refreshes it
    }
    // The open conversation's title may have changed: show it in the top bar too.
    const link = document.querySelector("#sidebar .convs__link.is-current");
    const title = document.getElementById("topbar-title");
    if (link && title && document.querySelector("#transcript") && title.textContent !== link.textContent) {
      title.textContent = link.textContent;
      document.title = `${link.textContent} · Chat`;
    }
  }

  // Copy buttons: one on each code block (added here: they need JavaScript anyway) and one
  // on each finished answer (server-rendered, class js-only). The answer's Markdown comes
  // from its inert <template data-markdown>.

  function decorate(root) {
    root.querySelectorAll(".prose pre").forEach((pre) => {
      if (pre.querySelector(":scope > .code-copy")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "code-copy";
      button.dataset.copyCode = "";
      button.setAttribute("aria-label", "Copy code");
      const label = document.createElement("span");
      label.dataset.label = "";
      label.textContent = "Copy";
      button.append(label);
      pre.prepend(button);
    });
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // No clipboard API (an insecure origin): the old way.
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.append(area);
      area.select();
      const copied = document.execCommand("copy");
      area.remove();
      return copied;
    }
  }

  async function copy(button, text) {
    const label = button.querySelector("[data-label]") || button;
    const before = button.dataset.before ?? label.textContent;
    button.dataset.before = before;
    const ok = await copyText(text);
    label.textContent = ok ? "Copied" : "Copy failed";
    button.classList.toggle("is-copied", ok);
    announce(ok ? "Copied to the clipboard" : "Could not copy");
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(() => {
      label.textContent = before;
      button.classList.remove("is-copied");
    }, 2000);
  }

  function announce(text) {
    const status = document.getElementById("announcer");
    if (status) status.textContent = text;
  }

  // "Jump to latest": shown while the reader is scrolled away from the bottom.

  function updateJump() {
    const jump = document.querySelector("[data-jump]");
    if (jump) jump.hidden = atBottom();
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
    if (!(textarea instanceof HTMLTextAreaElement)) return;
    if (event.key !== "Enter" || event.shiftKey || event.altKey || event.isComposing) return;
    if (textarea.id === "composer-input") {
      event.preventDefault();
      if (!busy() && textarea.value.trim()) textarea.form.requestSubmit();
    } else if (textarea.closest(".msg__editform") && (event.ctrlKey || event.metaKey)) {
      event.preventDefault(); // editing a message: Ctrl+Enter sends, Enter is a new line
      textarea.form.requestSubmit();
    }
  });

  // The composer's box only: htmx copies the style attribute of an element it swaps for one
  // with the same id, and a style attribute set that way breaks the CSP.
  document.addEventListener("input", (event) => {
    if (event.target.id === "composer-input") autoGrow(event.target);
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
  // Only the last question can be edited and the last answer regenerated: after an
  // exchange is appended in place, the previous ones' controls are stale.
  function dropStaleControls(transcript) {
    const questions = transcript.querySelectorAll(".msg--user");
    questions.forEach((question, n) => {
      if (n < questions.length - 1) question.querySelector(".msg__edit")?.remove();
    });
    transcript.querySelectorAll(".msg--assistant:not(:last-child) .msg__again").forEach((form) => {
      form.remove();
    });
  }

  document.addEventListener("htmx:after:swap", (event) => {
    const target = event.detail?.ctx?.target;
    if (target && target.id === "transcript") {
      dropStaleControls(target);
      toBottom();
    }
    decorate(document);
    wireAll(document);
    updateJump();
  });

  // Clicks: the Stop button, and the sidebar toggle on narrow screens.
  document.addEventListener("click", (event) => {
    const stopButton = event.target.closest("[data-stop]");
    if (stopButton) {
      cancel(stopButton);
      return;
    }
    const copyCode = event.target.closest("[data-copy-code]");
    if (copyCode) {
      copy(copyCode, copyCode.parentElement.querySelector("code")?.textContent ?? "");
      return;
    }
    const copyAnswer = event.target.closest("[data-copy-answer]");
    if (copyAnswer) {
      const source = copyAnswer.closest(".msg").querySelector("template[data-markdown]");
      copy(copyAnswer, source ? source.content.textContent : "");
      return;
    }
    if (event.target.closest("[data-jump]")) {
      toBottom();
      updateJump();
      return;
    }
    // A click outside an open menu closes it.
    document.querySelectorAll("details[data-menu][open]").forEach((menu) => {
      if (!menu.contains(event.target)) menu.open = false;
    });
    const opener = event.target.closest("[data-sidebar-open]");
    const closer = event.target.closest("[data-sidebar-close]");
    if (opener || closer) {
      event.preventDefault();
      setSidebar(Boolean(opener));
    } else if (document.body.classList.contains("sidebar-open") && !event.target.closest("#sidebar")) {
      setSidebar(false); // a click on the dimmed page beside the open sidebar
    }
  });

  // Escape closes what is open (a menu, then the sidebar), else stops the streaming answer;
  // Ctrl/Cmd+Shift+O opens a new chat.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.isComposing) {
      const menu = document.querySelector("details[data-menu][open], details.msg__edit[open]");
      if (menu) {
        menu.open = false;
        menu.querySelector("summary")?.focus();
      } else if (document.body.classList.contains("sidebar-open")) {
        setSidebar(false);
      } else {
        const stop = document.querySelector(".msg--streaming [data-stop]:not(:disabled)");
        if (stop) {
          event.preventDefault();
          cancel(stop);
        }
      }
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.shiftKey && event.key.toLowerCase() === "o") {
      const newChat = document.querySelector("[data-new-chat]");
      if (newChat) {
        event.preventDefault();
        window.location.assign(newChat.href);
      }
    }
  });

  // A menu opened: close the others, and put the cursor in its rename box.
  document.addEventListener(
    "toggle",
    (event) => {
      const menu = event.target;
      if (!(menu instanceof HTMLDetailsElement) || !menu.open) return;
      if (menu.matches("[data-menu]")) {
        document.querySelectorAll("details[data-menu][open]").forEach((other) => {
          if (other !== menu) other.open = false;
        });
        const input = menu.querySelector(".rename__input");
        if (input) {
          input.focus();
          input.select();
        }
      } else if (menu.matches(".msg__edit")) {
        menu.querySelector("textarea")?.focus();
      }
    },
    true,
  );

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
  decorate(document);
  toBottom();
  wireAll(document);
  scroller()?.addEventListener("scroll", updateJump, { passive: true });
  updateJump();
  // Leaving the page closes the streams; coming back from the back/forward cache reopens them.
  window.addEventListener("pagehide", () => {
    streams.forEach((stream) => stream.close());
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) wireAll(document);
  });
})();
