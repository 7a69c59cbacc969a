// An answer that has ended: its bubble is swapped for the server's rendering of the
// stored message (GET data-message-url: Markdown, the error and Retry, "Stopped"), or,
// failing that, at least stops looking live.

import { decorate } from "./clipboard.js";
import { updateComposer } from "./composer.js";
import { keepingPlace } from "./scrolling.js";
import { firstElement } from "./shared.js";

// The backoff, here and for reopening a stream: from a second, doubling, up to 30 s.
export const RETRY_MIN_MS = 1000;
export const RETRY_MAX_MS = 30000;

function ended(bubble) {
  bubble.classList.remove("msg--streaming");
  bubble.removeAttribute("data-stream-url");
  const actions = bubble.querySelector(".msg__actions");
  if (actions) actions.remove();
  const reconnecting = bubble.querySelector("[data-reconnecting]");
  if (reconnecting) reconnecting.hidden = true;
  updateComposer();
}

export function failed(bubble, message) {
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
export async function settle(bubble, delay = RETRY_MIN_MS) {
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
export async function refresh(bubble) {
  let fresh = null;
  try {
    const response = await fetch(bubble.dataset.messageUrl, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (!response.ok && response.status >= 500) return "streaming";
    if (response.ok) fresh = firstElement(await response.text()); // server-rendered, sanitised
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
