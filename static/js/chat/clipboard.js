// Copy buttons: one on each code block (added here: they need JavaScript anyway) and one
// on each finished answer (server-rendered, class js-only). The answer's Markdown comes
// from its inert <template data-markdown>; a [data-copy-text] button copies its own value.

export function decorate(root) {
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

// A click on a Copy button (a code block's or an answer's). True if it was one.
export function copyClicked(event) {
  const copyCode = event.target.closest("[data-copy-code]");
  if (copyCode) {
    copy(copyCode, copyCode.parentElement.querySelector("code")?.textContent ?? "");
    return true;
  }
  const copyText = event.target.closest("[data-copy-text]");
  if (copyText) {
    copy(copyText, copyText.dataset.copyText);
    return true;
  }
  const copyAnswer = event.target.closest("[data-copy-answer]");
  if (copyAnswer) {
    const source = copyAnswer.closest(".msg").querySelector("template[data-markdown]");
    copy(copyAnswer, source ? source.content.textContent : "");
    return true;
  }
  return false;
}
