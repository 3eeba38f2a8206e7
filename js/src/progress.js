// torq_nb progress widget: the live view of a ProgressTracker.
// A plain ES module for anywidget (no build step), sent after common.js. The kernel syncs the tracker's
// status as one value, `status` (ProgressStatus's fields: operation, stage, state, percent, done, total,
// rate, eta, duration, error, stages…), plus the view's own `cancellable` and `stop_hint`. Every string from the kernel is set
// with textContent, never as HTML. Elapsed time ticks locally from the last reported duration, so it
// keeps moving while the kernel is busy and never depends on the two machines' clocks agreeing.

const VIEW_TRAITS = ["status", "cancellable", "stop_hint"];

/** A rate in the tracker's unit ("it", "pages", ...), as tqdm writes it. */
function formatRate(rate, unit) {
  return rate >= 100 ? `${Math.round(rate).toLocaleString("en-US")} ${unit}/s` : `${rate.toFixed(2)} ${unit}/s`;
}

function formatCount(n) {
  return Number(n).toLocaleString("en-US");
}

function show(node, text) {
  node.textContent = text;
  node.hidden = !text;
}

/** What the run is doing, in a few words: the stage while running, else the state. */
function where(state, stage) {
  if (state === "running") return stage || "starting";
  if ((state === "failed" || state === "cancelled") && stage) return `${state} at ${stage}`;
  return state;
}

function render({ model, el }) {
  const root = make("div", "torq-progress");
  // Cancel asks the kernel to cancel the run. The kernel side decides whether to offer it (`cancellable`): a
  // busy kernel takes the click only where it hands widget messages to a subshell; elsewhere `stop_hint`
  // says how to stop a run that holds the cell.
  const { header, operation, status, percentLabel, cancel, onCancel, hint, bar, fill } = headerAndBar("torq-progress", model);

  const stageList = make("ol", "torq-progress__stages");
  const details = make("div", "torq-progress__details");
  const counts = make("span", "torq-progress__counts");
  const rate = make("span", "torq-progress__rate");
  const eta = make("span", "torq-progress__eta");
  const elapsed = make("span", "torq-progress__elapsed");
  details.append(counts, rate, eta, elapsed);
  const message = make("div", "torq-progress__message");
  const error = make("div", "torq-progress__error");
  error.setAttribute("role", "alert");

  root.append(header, bar, stageList, details, message, error, hint);
  el.append(root);

  // When this view last received a status, whose duration the clock counts on from (performance.now()).
  // Each view notes its own arrivals: a host hands initialize() and every render() a different model
  // object, so nothing can be keyed by the model.
  let arrivedAt = performance.now();
  const onStatus = () => {
    arrivedAt = performance.now();
  };
  model.on("change:status", onStatus);
  const current = () => model.get("status") || {};

  let stageKey = null;
  let stageItems = new Map();
  let timer = null;
  let disposed = false;

  function renderStages() {
    const stages = current().stages || [];
    const key = JSON.stringify(stages.map((s) => s.name));
    if (key !== stageKey) {
      stageKey = key;
      stageItems = new Map();
      stageList.replaceChildren(...stages.map((s) => {
        const item = make("li", "torq-progress__stage");
        item.dataset.stageName = s.name;
        const name = make("span", "torq-progress__stage-name");
        name.textContent = s.name;
        item.append(make("span", "torq-progress__stage-mark"), name);
        stageItems.set(s.name, item);
        return item;
      }));
    }
    for (const s of stages) {
      const item = stageItems.get(s.name);
      item.dataset.stageState = s.state;
      item.title = s.duration != null ? `${s.name}: ${s.state}, ${formatDuration(s.duration)}` : `${s.name}: ${s.state}`;
      if (s.state === "running") item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
  }

  function renderClock() {
    const s = current();
    const running = s.state === "running";
    const since = running ? (performance.now() - arrivedAt) / 1000 : 0;
    elapsed.textContent = `elapsed ${formatDuration((s.duration || 0) + since)}`;
    const remaining = s.eta;
    show(eta, running && remaining != null ? `ETA ${formatDuration(Math.max(remaining - since, 0))}` : "");
  }

  function syncTimer() {
    const running = current().state === "running";
    if (running && timer === null) timer = setInterval(renderClock, TICK_MS);
    if (!running && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  function update() {
    if (disposed) return;
    const s = current();
    const state = s.state || "pending";
    const stage = s.stage;
    const percent = Math.min(Math.max(Number(s.percent) || 0, 0), 100);
    const shown = state === "complete" ? 100 : Math.floor(percent);
    const done = s.done || 0;
    const total = s.total;
    const phrase = where(state, stage);

    root.dataset.state = state;
    root.dataset.stage = stage || "";
    root.dataset.percent = String(Math.round(percent * 10) / 10);

    operation.textContent = s.operation || "";
    status.textContent = phrase;
    percentLabel.textContent = `${shown}%`;
    fill.style.width = `${percent}%`;

    const countText = total ? `${formatCount(done)}/${formatCount(total)}` : done ? formatCount(done) : "";
    bar.setAttribute("aria-label", s.operation || "progress");
    bar.setAttribute("aria-valuenow", String(Math.round(percent * 10) / 10));
    bar.setAttribute("aria-valuetext", [`${phrase}, ${shown}%`, countText && `${countText} items`].filter(Boolean).join(", "));

    show(counts, countText);
    show(rate, s.rate ? formatRate(s.rate, s.unit || "it") : "");
    show(message, s.message || "");
    show(error, s.error ? `${s.error.type}: ${s.error.message}` : "");

    syncCancel(model, cancel, hint, state === "running" || state === "pending");

    renderStages();
    renderClock();
    syncTimer();
  }

  const schedule = coalesced(update);
  for (const trait of VIEW_TRAITS) model.on(`change:${trait}`, schedule);
  update();

  return () => {
    disposed = true;
    if (timer !== null) clearInterval(timer);
    timer = null;
    for (const trait of VIEW_TRAITS) model.off(`change:${trait}`, schedule);
    model.off("change:status", onStatus);
    cancel.removeEventListener("click", onCancel);
    root.remove();
  };
}

export default { render };
