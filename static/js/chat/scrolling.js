// Scrolling: follow the answer only while the reader is at the bottom; "jump to latest"
// is shown while the reader is scrolled away from the bottom.

const NEAR_BOTTOM_PX = 48;

const scroller = () => document.getElementById("scroller");

function atBottom() {
  const box = scroller();
  return !box || box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
}

export function toBottom() {
  const box = scroller();
  if (box) box.scrollTop = box.scrollHeight;
}

// Keep the reader's place across a change, or stay at the bottom if they were there.
export function keepingPlace(change) {
  const box = scroller();
  const follow = atBottom();
  const top = box ? box.scrollTop : 0;
  change();
  if (follow) toBottom();
  else if (box) box.scrollTop = top;
  updateJump();
}

export function updateJump() {
  const jump = document.querySelector("[data-jump]");
  if (jump) jump.hidden = atBottom();
}

// A click on "jump to latest". True if it was one.
export function jumpClicked(event) {
  if (!event.target.closest("[data-jump]")) return false;
  toBottom();
  updateJump();
  return true;
}

export function watchScrolling() {
  scroller()?.addEventListener("scroll", updateJump, { passive: true });
  updateJump();
}
