// Shared by the torq_nb widgets. anywidget loads one module per widget and no build step joins files, so
// the Python side (torq_nb/progress/widget.py, widget_asset) sends this file followed by the widget's own
// (progress.js, batch.js) as that one module: the names below are in scope there, without an import.

const TICK_MS = 250;

/** MM:SS below an hour, H:MM:SS above (like tqdm); "--:--" when unknown. */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  const whole = Math.floor(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = whole % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hours ? `${hours}:${two(minutes)}:${two(secs)}` : `${two(minutes)}:${two(secs)}`;
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/**
 * A widget's header (operation, status, percent, a hidden Cancel button that asks the kernel to cancel),
 * its stop hint and its progress bar with one fill, their classes under `block` ("torq-progress", "torq-batch").
 */
function headerAndBar(block, model) {
  const header = make("div", `${block}__header`);
  const operation = make("span", `${block}__operation`);
  const status = make("span", `${block}__status`);
  const percentLabel = make("span", `${block}__percent`);
  const cancel = make("button", `${block}__cancel`, "Cancel");
  cancel.type = "button";
  cancel.hidden = true;
  const onCancel = () => {
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    model.send({ type: "cancel" });
  };
  cancel.addEventListener("click", onCancel);
  header.append(operation, status, percentLabel, cancel);

  // Where the kernel cannot take the click while a cell is busy, it sends `stop_hint` instead: how to stop.
  const hint = make("div", `${block}__hint`);
  hint.hidden = true;

  const bar = make("div", `${block}__bar`);
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  const fill = make("div", `${block}__fill`);
  bar.append(fill);
  return { header, operation, status, percentLabel, cancel, onCancel, hint, bar, fill };
}

/** While the run is live: the Cancel button if the kernel offers it (`cancellable`), else its `stop_hint`. */
function syncCancel(model, cancel, hint, live) {
  cancel.hidden = !(model.get("cancellable") && live);
  hint.textContent = live ? model.get("stop_hint") || "" : "";
  hint.hidden = !hint.textContent;
}

/** `update` run once after the changes of one comm message, however many fields it carries. */
function coalesced(update) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      update();
    });
  };
}
