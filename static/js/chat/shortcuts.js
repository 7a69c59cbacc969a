// Keyboard shortcuts, after ChatGPT's where they fit, listed in the "?" dialog
// (templates/chat/layout.html):
//   Ctrl/Cmd+Shift+O  new chat
//   Shift+Escape      focus the message box
//   Ctrl/Cmd+Shift+C  copy the last answer (when there is one; some browsers give this
//                     key to their developer tools first: the Copy button does the same)
//   Ctrl/Cmd+Shift+;  copy the last code block
//   Ctrl+/ or ?       this list (? only when not typing)
// Escape (stop the answer, close a menu) stays in main.js; here it only closes the dialog.

function typing(target) {
  const fields = "input, textarea, select, [contenteditable]";
  return target instanceof HTMLElement && target.closest(fields) !== null;
}

function dialog() {
  return document.querySelector("[data-shortcuts]");
}

let opener = null;

export function openShortcuts() {
  const shown = dialog();
  if (!shown || shown.open) return;
  opener = document.activeElement;
  shown.showModal();
}

function closed() {
  // Focus goes back where it was before the dialog opened, unless a key pressed since
  // (the "close" event comes a moment after the Escape) already put it somewhere.
  const unmoved = [document.body, dialog()].includes(document.activeElement) ||
    dialog()?.contains(document.activeElement);
  if (unmoved && opener instanceof HTMLElement && opener.isConnected) opener.focus();
  opener = null;
}

// The last element of `selector` on the page, clicked: a Copy button does the copying.
function clickLast(selector) {
  const all = document.querySelectorAll(selector);
  const last = all[all.length - 1];
  if (last) last.click();
  return Boolean(last);
}

function shortcut(event) {
  const key = event.key.toLowerCase();
  const command = (event.ctrlKey || event.metaKey) && !event.altKey;
  if (event.key === "Escape" && event.shiftKey) {
    const composer = document.getElementById("composer-input");
    if (!composer) return false;
    composer.focus();
    return true;
  }
  if (command && event.shiftKey && key === "o") {
    const newChat = document.querySelector("[data-new-chat]");
    if (!newChat) return false;
    window.location.assign(newChat.href);
    return true;
  }
  if (command && event.shiftKey && key === "c") {
    return clickLast(".msg--assistant:not(.msg--streaming) [data-copy-answer]");
  }
  if (command && event.shiftKey && (event.code === "Semicolon" || key === ";")) {
    return clickLast(".msg--assistant:not(.msg--streaming) .prose [data-copy-code]");
  }
  const slash = command && !event.shiftKey && (key === "/" || event.code === "Slash");
  if (slash || (event.key === "?" && !command && !typing(event.target))) {
    openShortcuts();
    return true;
  }
  return false;
}

export function watchShortcuts() {
  // The capture phase, before main.js's Escape (which would stop the answer) sees the key.
  window.addEventListener(
    "keydown",
    (event) => {
      if (event.isComposing || event.defaultPrevented) return;
      if (dialog()?.open) {
        // The dialog's own Escape closes it (natively); nothing behind it reacts.
        if (event.key === "Escape") event.stopPropagation();
        return;
      }
      if (shortcut(event)) {
        event.preventDefault();
        event.stopPropagation();
      }
    },
    true,
  );
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-shortcuts-open]")) openShortcuts();
    else if (event.target.closest("[data-shortcuts-close]")) dialog()?.close();
  });
  dialog()?.addEventListener("close", closed);
}
