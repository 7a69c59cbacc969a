// What an answer holds besides its text, while it streams: the model's reasoning and a
// card per tool call, built in the markup templates/chat/conversation.html#extras gives
// a finished answer. Reasoning, arguments and results are untrusted: text nodes only.

import { keepingPlace } from "./scrolling.js";

const ARGS_TITLE_CHARS = 80;

export class AnswerExtras {
  constructor(bubble) {
    this.thinking = bubble.querySelector("[data-thinking]");
    this.thinkingLabel = bubble.querySelector("[data-thinking-label]");
    this.thinkingText = bubble.querySelector("[data-thinking-text]");
    this.tools = bubble.querySelector("[data-tools]");
    this.reset();
  }

  // Forget what is shown: the stream replays the answer from its start.
  reset() {
    this.cards = new Map(); // call id -> card
    this.thinkingSince = null;
    this.thought = false;
    if (!this.thinking) return;
    this.thinking.hidden = true;
    this.thinkingText.textContent = "";
    this.tools.textContent = "";
  }

  reasoning(data) {
    if (!this.thinking) return;
    keepingPlace(() => {
      if (this.thinkingSince === null) {
        this.thinkingSince = Date.now();
        this.thinking.hidden = false;
        this.thinking.open = true;
        this.thinkingLabel.textContent = "Thinking…";
      }
      this.thinkingText.append(document.createTextNode(data.content));
    });
  }

  // The answer went on, in text or with a tool: the reasoning closes to one line.
  onward() {
    if (this.thinkingSince === null || this.thought) return;
    this.thought = true;
    const seconds = Math.max(1, Math.round((Date.now() - this.thinkingSince) / 1000));
    this.thinkingLabel.textContent = `Thought for ${seconds} s`;
    this.thinking.open = false;
  }

  toolStart(data) {
    if (!this.tools) return;
    this.onward();
    const card = toolCard(data);
    this.cards.set(data.id, card);
    keepingPlace(() => this.tools.append(card));
  }

  progress(data) {
    const card = this.cards.get(data.id);
    if (!card) return;
    let bar = card.querySelector("progress");
    if (!bar) {
      bar = element("progress", "toolcard__progress");
      bar.max = 1;
      card.querySelector(".toolcard__body").prepend(bar, element("p", "toolcard__message"));
    }
    if (data.fraction === null) bar.removeAttribute("value");
    else bar.value = data.fraction;
    card.querySelector(".toolcard__message").textContent = data.message;
  }

  toolEnd(data) {
    const card = this.cards.get(data.id);
    if (!card) return;
    card.querySelector("progress")?.remove();
    card.querySelector(".toolcard__message")?.remove();
    const failed = "error" in data;
    card.classList.replace("toolcard--running", failed ? "toolcard--error" : "toolcard--done");
    card.querySelector("[data-state]").textContent = failed ? "Failed" : "Done";
    const body = card.querySelector(".toolcard__body");
    if (failed) {
      body.append(element("p", "toolcard__error", data.error.message));
    } else {
      body.append(element("p", "toolcard__label", "Result"));
      body.append(element("pre", "toolcard__json", JSON.stringify(data.result, null, 2)));
    }
  }
}

function toolCard(data) {
  const card = element("details", "toolcard toolcard--running");
  card.dataset.callId = data.id;
  const icon = element("span", "toolcard__icon");
  icon.setAttribute("aria-hidden", "true");
  const args = JSON.stringify(data.arguments);
  const title = args.length > ARGS_TITLE_CHARS ? `${args.slice(0, ARGS_TITLE_CHARS - 1)}…` : args;
  const state = element("span", "toolcard__state", "Running…");
  state.dataset.state = "";
  const summary = element("summary");
  summary.append(icon, element("span", "toolcard__name", data.name), element("code", "toolcard__args", title), state);
  const body = element("div", "toolcard__body");
  body.append(element("p", "toolcard__label", "Arguments"));
  body.append(element("pre", "toolcard__json", JSON.stringify(data.arguments, null, 2)));
  card.append(summary, body);
  return card;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
