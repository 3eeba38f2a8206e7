// torq_nb batch widget: the one live view of a batch of research topics (a BatchTracker).
// A plain ES module for anywidget (no build step), sent after common.js. The kernel sends one snapshot ("view") per update
// (plus the view's own `cancellable` and `stop_hint`):
// the overall counts, the count of topics in each stage, and short lists (running, failed, recently
// finished), so the view stays the same size at 5,000 topics as at 5. Every string from the kernel is set
// with textContent, never as HTML. Elapsed time and ETA tick locally from the last snapshot.

const count = (n) => Number(n || 0).toLocaleString("en-US");

const MARKS = { pending: "○", running: "●", complete: "✓", failed: "✗", cancelled: "■" };

/** The counts of topics per stage (running ones) and per end, zeros left out. */
function chips(view) {
  const states = view.states || {};
  const pairs = Object.entries(view.stages || {});
  for (const name of ["pending", "complete", "failed", "cancelled"]) pairs.push([name, states[name] || 0]);
  return pairs.filter(([, n]) => n > 0);
}

function itemRow(item, unit) {
  const row = make("li", "torq-batch__item");
  row.dataset.state = item.state || "pending";
  const where = item.state === "running" ? item.stage || "starting" : item.state;
  const pages = `${item.done || 0}${item.total ? `/${item.total}` : ""} ${unit}`;
  row.append(
    make("span", "torq-batch__mark", MARKS[item.state] || "●"),
    make("span", "torq-batch__topic", item.key || ""),
    make("span", "torq-batch__where", where),
    make("span", "torq-batch__pages", pages),
  );
  if (item.reason) row.append(make("span", "torq-batch__reason", item.reason));
  row.title = [item.key, where, pages, item.reason].filter(Boolean).join(" · ");
  return row;
}

function render({ model, el }) {
  const root = make("div", "torq-batch");
  const { header, operation, status, percentLabel, cancel, onCancel, hint, bar, fill } = headerAndBar("torq-batch", model);
  const failedFill = make("div", "torq-batch__fill torq-batch__fill--failed");
  bar.append(failedFill);

  const details = make("div", "torq-batch__details");
  const stageList = make("ul", "torq-batch__stages");
  const lists = make("div", "torq-batch__lists");
  root.append(header, bar, details, stageList, lists, hint);
  el.append(root);

  // When this view last received a snapshot, whose duration the clock counts on from.
  let arrivedAt = performance.now();
  const onView = () => {
    arrivedAt = performance.now();
  };
  model.on("change:view", onView);
  // The rate's unit, kept until the rate moves well past 1 topic/s, so it does not flip on every update.
  let perSecond = false;
  let timer = null;
  let disposed = false;

  function clockText(view) {
    const running = view.state === "running";
    const since = running ? (performance.now() - arrivedAt) / 1000 : 0;
    const parts = [];
    if (running && view.eta != null) parts.push(`ETA ${formatDuration(Math.max(view.eta - since, 0))}`);
    parts.push(`elapsed ${formatDuration((view.duration || 0) + since)}`);
    return parts.join(" · ");
  }

  function renderDetails(view) {
    const states = view.states || {};
    const unit = view.unit || "items";
    const parts = [`${count(view.ended)}/${count(view.total)} topics`];
    if (states.failed) parts.push(`${count(states.failed)} failed`);
    if (states.cancelled) parts.push(`${count(states.cancelled)} cancelled`);
    parts.push(`${count(view.units)} ${view.units === 1 ? unit.replace(/s$/, "") : unit} read`);  // "1 page read"
    if (view.rate) {
      perSecond = perSecond ? view.rate >= 0.5 : view.rate >= 2;
      parts.push(perSecond ? `${view.rate.toFixed(1)} topics/s` : `${(view.rate * 60).toFixed(1)} topics/min`);
    }
    if (view.unit_rate) parts.push(`${view.unit_rate.toFixed(1)} ${unit}/s`);
    const clock = make("span", "torq-batch__clock", clockText(view));
    details.replaceChildren(...parts.map((p) => make("span", "torq-batch__fact", p)), clock);
  }

  function renderLists(view) {
    const unit = view.unit || "items";
    const sections = [];
    const add = (title, items, extra) => {
      if (!items || !items.length) return;
      const section = make("div", "torq-batch__section");
      section.append(make("div", "torq-batch__heading", title));
      const list = make("ul", "torq-batch__list");
      list.append(...items.map((item) => itemRow(item, unit)));
      section.append(list);
      if (extra) section.append(make("div", "torq-batch__more", extra));
      sections.push(section);
    };
    const states = view.states || {};
    if (view.state === "running") {
      const running = states.running || 0;
      const shown = (view.running || []).length;
      add(`Running (${count(running)})`, view.running, running > shown ? `+${count(running - shown)} more running` : "");
    }
    const failures = view.failures || [];
    const failed = states.failed || 0;
    add(`Failed (${count(failed)})`, failures,
      failed > failures.length ? `+${count(failed - failures.length)} more: see results.summaries` : "");
    add("Recently finished", (view.recent || []).filter((item) => item.state !== "failed"));
    lists.replaceChildren(...sections);
  }

  function update() {
    if (disposed) return;
    const view = model.get("view") || {};
    const state = view.state || "pending";
    const percent = Math.min(Math.max(Number(view.percent) || 0, 0), 100);
    const total = view.total || 0;
    const failedShare = total ? (100 * ((view.states || {}).failed || 0)) / total : 0;

    root.dataset.state = state;
    root.dataset.percent = String(Math.round(percent * 10) / 10);
    operation.textContent = view.operation || "";
    status.textContent = state;
    percentLabel.textContent = `${state === "complete" ? 100 : Math.floor(percent)}%`;
    fill.style.width = `${Math.max(percent - failedShare, 0)}%`;
    failedFill.style.width = `${failedShare}%`;
    bar.setAttribute("aria-label", view.operation || "batch progress");
    bar.setAttribute("aria-valuenow", String(Math.round(percent * 10) / 10));
    bar.setAttribute("aria-valuetext", `${state}, ${count(view.ended)} of ${count(total)} topics`);

    renderDetails(view);
    stageList.replaceChildren(...chips(view).map(([name, n]) => {
      const chip = make("li", "torq-batch__chip");
      chip.dataset.stage = name;
      chip.append(make("span", "torq-batch__chip-name", name), make("span", "torq-batch__chip-count", count(n)));
      return chip;
    }));
    renderLists(view);
    syncCancel(model, cancel, hint, state === "running" || state === "pending");

    const running = state === "running";
    if (running && timer === null) {
      timer = setInterval(() => {
        const clock = details.querySelector(".torq-batch__clock");
        if (clock) clock.textContent = clockText(model.get("view") || {});
      }, TICK_MS);
    }
    if (!running && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  const schedule = coalesced(update);
  model.on("change:view", schedule);
  model.on("change:cancellable", schedule);
  model.on("change:stop_hint", schedule);
  update();

  return () => {
    disposed = true;
    if (timer !== null) clearInterval(timer);
    model.off("change:view", schedule);
    model.off("change:view", onView);
    model.off("change:cancellable", schedule);
    model.off("change:stop_hint", schedule);
    cancel.removeEventListener("click", onCancel);
    root.remove();
  };
}

export default { render };
