// The composer: Enter sends, Shift+Enter is a new line; no sending while an answer
// streams (the form is busy), and the streaming answer's Stop button (or Escape) stops it.

import { csrfToken } from "./shared.js";

const composer = () => document.getElementById("composer");

function busy() {
  return document.querySelector(".msg--streaming") !== null;
}

export function updateComposer() {
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

export function growComposer() {
  document.querySelectorAll("#composer textarea").forEach(autoGrow);
}

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

// A click on a Stop button. True if it was one.
export function stopClicked(event) {
  const stopButton = event.target.closest("[data-stop]");
  if (stopButton) cancel(stopButton);
  return Boolean(stopButton);
}

// Escape, with nothing open to close: stop the streaming answer.
export function stopOnEscape(event) {
  const stop = document.querySelector(".msg--streaming [data-stop]:not(:disabled)");
  if (stop) {
    event.preventDefault();
    cancel(stop);
  }
}

export function watchComposer() {
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
}
