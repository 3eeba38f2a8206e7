// Front-end tests of js/src/progress.js against a fake anywidget model, in a real browser.
import widget, { formatDuration } from "../src/progress.js";
import { FakeModel, activeIntervals, advanceClock, assert, equal, settle, test, waitFor } from "./harness.js";

const HOSTILE = "<img src=x onerror=\"window.__pwned=1\">";

function status(overrides = {}) {
  return {
    operation: "research_task",
    operation_id: "abc",
    stage: "searching",
    state: "running",
    percent: 37.5,
    message: "fetching pages",
    done: 120,
    total: 400,
    rate: 53.2,
    eta: 13.2,
    duration: 5.0,
    error: null,
    stages: [
      { name: "initializing", percent: 0, state: "complete", started_at: null, duration: 0.1 },
      { name: "searching", percent: 25, state: "running", started_at: null, duration: 4.9 },
      { name: "extracting", percent: 50, state: "pending", started_at: null, duration: null },
      { name: "synthesizing", percent: 75, state: "pending", started_at: null, duration: null },
      { name: "complete", percent: 100, state: "pending", started_at: null, duration: null },
    ],
    ...overrides,
  };
}

const VIEW_OPTIONS = ["cancellable", "stop_hint"];

/** The model as the kernel syncs it: the tracker's status as one value, and the view's own options. */
function state(fields = {}) {
  const options = Object.fromEntries(VIEW_OPTIONS.filter((name) => name in fields).map((name) => [name, fields[name]]));
  const rest = Object.fromEntries(Object.entries(fields).filter(([name]) => !VIEW_OPTIONS.includes(name)));
  return { status: status(rest), cancellable: false, stop_hint: "", ...options };
}

/** One published status from the kernel: the whole status value again, with these fields changed. */
function push(model, fields) {
  model.update({ status: { ...model.get("status"), ...fields } });
}

function mount(host, fields) {
  const model = new FakeModel(state(fields));
  // As in a real anywidget host: initialize() and render() each get their own proxy of the model.
  const stopModel = widget.initialize?.({ model: model.proxy() }) ?? (() => {});
  const stopView = widget.render({ model: model.proxy(), el: host });
  const root = host.querySelector(".torq-progress");
  const cleanup = () => {
    stopView();
    stopModel();
  };
  return { model, root, cleanup };
}

test("root element carries data-state, data-stage and data-percent", async (host) => {
  const { root, cleanup } = mount(host);
  assert(root, "no .torq-progress element rendered");
  equal(root.dataset.state, "running", "data-state");
  equal(root.dataset.stage, "searching", "data-stage");
  equal(root.dataset.percent, "37.5", "data-percent");
  cleanup();
});

test("each stage item carries data-stage-name and data-stage-state", async (host) => {
  const states = ["complete", "skipped", "failed", "cancelled", "running", "pending"];
  const stages = states.map((state, i) => ({ name: `s${i}`, percent: i * 10, state, started_at: null, duration: null }));
  const { root, cleanup } = mount(host, { stages });
  const items = [...root.querySelectorAll("[data-stage-name]")];
  equal(items.length, states.length, "stage item count");
  items.forEach((item, i) => {
    equal(item.dataset.stageName, `s${i}`, "stage name");
    equal(item.dataset.stageState, states[i], "stage state");
  });
  equal(root.querySelector('[aria-current="step"]').dataset.stageName, "s4", "running stage is aria-current");
  cleanup();
});

test("data attributes follow the model after one batched message", async (host) => {
  const { model, root, cleanup } = mount(host);
  const stages = status().stages.map((s) => ({ ...s, state: s.name === "extracting" ? "running" : s.name === "initializing" || s.name === "searching" ? "complete" : "pending" }));
  push(model, { stage: "extracting", percent: 50, stages });
  await settle();
  equal(root.dataset.stage, "extracting", "data-stage");
  equal(root.dataset.percent, "50", "data-percent");
  equal(root.querySelector('[data-stage-name="searching"]').dataset.stageState, "complete", "searching done");
  equal(root.querySelector('[data-stage-name="extracting"]').dataset.stageState, "running", "extracting running");
  push(model, { state: "complete", stage: "complete", percent: 100 });
  await settle();
  equal(root.dataset.state, "complete", "data-state complete");
  equal(root.dataset.percent, "100", "data-percent complete");
  equal(root.querySelector(".torq-progress__percent").textContent, "100%", "percent label");
  cleanup();
});

test("progress bar exposes role and aria values", async (host) => {
  const { model, root, cleanup } = mount(host);
  const bar = root.querySelector('[role="progressbar"]');
  assert(bar, "no role=progressbar");
  equal(bar.getAttribute("aria-valuemin"), "0", "aria-valuemin");
  equal(bar.getAttribute("aria-valuemax"), "100", "aria-valuemax");
  equal(bar.getAttribute("aria-valuenow"), "37.5", "aria-valuenow");
  equal(bar.getAttribute("aria-valuetext"), "searching, 37%, 120/400 items", "aria-valuetext");
  equal(bar.getAttribute("aria-label"), "research_task", "aria-label");
  push(model, { percent: 62.25 });
  await settle();
  equal(bar.getAttribute("aria-valuenow"), "62.3", "aria-valuenow follows");
  cleanup();
});

test("outside text is rendered as text, never as HTML", async (host) => {
  const stages = status().stages.map((s, i) => (i === 1 ? { ...s, name: HOSTILE } : s));
  const { model, root, cleanup } = mount(host, { operation: HOSTILE, message: HOSTILE, stage: HOSTILE, stages });
  push(model, { state: "failed", error: { type: HOSTILE, message: HOSTILE } });
  await settle();
  equal(root.querySelectorAll("img").length, 0, "an <img> element was created from outside text");
  equal(root.querySelector(".torq-progress__message").textContent, HOSTILE, "message text");
  equal(root.querySelector(".torq-progress__operation").textContent, HOSTILE, "operation text");
  equal(root.querySelector(".torq-progress__error").textContent, `${HOSTILE}: ${HOSTILE}`, "error text");
  equal(root.querySelector(".torq-progress__stage:nth-child(2) .torq-progress__stage-name").textContent, HOSTILE, "stage name text");
  await new Promise((resolve) => setTimeout(resolve, 100));
  equal(window.__pwned, undefined, "an onerror handler from outside text ran");
  cleanup();
});

test("rate and ETA show when counts are known, and hide otherwise", async (host) => {
  const { model, root, cleanup } = mount(host);
  const visible = (selector) => !root.querySelector(selector).hidden;
  equal(root.querySelector(".torq-progress__counts").textContent, "120/400", "counts");
  equal(root.querySelector(".torq-progress__rate").textContent, "53.20 it/s", "rate");
  assert(root.querySelector(".torq-progress__eta").textContent.startsWith("ETA 00:1"), "ETA shown");
  push(model, { unit: "pages" });
  await settle();
  equal(root.querySelector(".torq-progress__rate").textContent, "53.20 pages/s", "rate in the tracker's unit");
  push(model, { done: 0, total: null, rate: null, eta: null });
  await settle();
  assert(!visible(".torq-progress__counts"), "counts hidden without counts");
  assert(!visible(".torq-progress__rate"), "rate hidden without rate");
  assert(!visible(".torq-progress__eta"), "ETA hidden without ETA");
  cleanup();
});

test("elapsed time ticks in the browser without model changes", async (host) => {
  const { root, cleanup } = mount(host, { duration: 5.0 });
  const elapsed = root.querySelector(".torq-progress__elapsed");
  equal(elapsed.textContent, "elapsed 00:05", "initial elapsed");
  await waitFor(() => elapsed.textContent === "elapsed 00:06", `elapsed to reach 00:06, is ${elapsed.textContent}`);
  cleanup();
});

test("elapsed time restarts from each reported duration", async (host) => {
  const { model, root, cleanup } = mount(host, { duration: 5.0 });
  push(model, { duration: 125.0 });
  await settle();
  equal(root.querySelector(".torq-progress__elapsed").textContent, "elapsed 02:05", "elapsed follows the kernel");
  push(model, { state: "complete", duration: 3725.0 });
  await settle();
  equal(root.querySelector(".torq-progress__elapsed").textContent, "elapsed 1:02:05", "final elapsed is the final duration");
  cleanup();
});

test("elapsed and ETA count from each arrival, not on top of it (a real host's distinct model objects)", async (host) => {
  const { model, root, cleanup } = mount(host, { duration: 5.0, eta: 13.6 });
  const elapsed = root.querySelector(".torq-progress__elapsed");
  const eta = root.querySelector(".torq-progress__eta");
  advanceClock(3000); // 3 s with no message: the browser's own tick carries the clock on
  await waitFor(() => elapsed.textContent === "elapsed 00:08", `elapsed to reach 00:08, is ${elapsed.textContent}`);
  equal(eta.textContent, "ETA 00:10", "ETA counted down meanwhile");
  // The kernel reports what it measured meanwhile: the view shows it as it is, not 3 s more.
  push(model, { duration: 8.1, eta: 10.6 });
  await settle();
  equal(elapsed.textContent, "elapsed 00:08", "elapsed after the kernel's next duration");
  equal(eta.textContent, "ETA 00:10", "ETA after the kernel's next estimate");
  advanceClock(2000);
  await waitFor(() => elapsed.textContent === "elapsed 00:10", `elapsed to reach 00:10, is ${elapsed.textContent}`);
  equal(eta.textContent, "ETA 00:08", "ETA falls as the run goes");
  cleanup();
});

test("two views of one model keep the same clock", async (host) => {
  const { model, root, cleanup } = mount(host, { duration: 2.0 });
  const second = document.createElement("div");
  host.append(second);
  const stopSecond = widget.render({ model: model.proxy(), el: second });
  advanceClock(4000);
  push(model, { duration: 6.2 });
  await settle();
  equal(root.querySelector(".torq-progress__elapsed").textContent, "elapsed 00:06", "first view");
  equal(second.querySelector(".torq-progress__elapsed").textContent, "elapsed 00:06", "second view");
  stopSecond();
  cleanup();
});

test("the clock stops when the run ends", async (host) => {
  const before = activeIntervals.size;
  const { model, cleanup } = mount(host);
  equal(activeIntervals.size, before + 1, "one clock while running");
  push(model, { state: "failed", error: { type: "ValueError", message: "boom" } });
  await settle();
  equal(activeIntervals.size, before, "clock still running after failure");
  cleanup();
});

test("cleanup clears timers and removes listeners", async (host) => {
  const before = activeIntervals.size;
  const { model, cleanup } = mount(host);
  assert(model.listenerCount() > 0, "no listeners registered");
  push(model, { percent: 40 }); // leaves a batched redraw queued
  cleanup();
  await settle();
  equal(activeIntervals.size, before, "intervals left running");
  equal(model.listenerCount(), 0, "listeners left on the model");
  equal(host.querySelector(".torq-progress"), null, "view left in the page");
});

test("failure shows the error in the error style", async (host) => {
  host.style.setProperty("--jp-error-color1", "rgb(200, 10, 20)");
  const { model, root, cleanup } = mount(host);
  const error = root.querySelector(".torq-progress__error");
  assert(error.hidden, "error shown before any failure");
  push(model, { state: "failed", error: { type: "ValueError", message: "no pages found" } });
  await settle();
  assert(!error.hidden, "error hidden after failure");
  equal(error.getAttribute("role"), "alert", "error role");
  equal(error.textContent, "ValueError: no pages found", "error text");
  equal(getComputedStyle(error).color, "rgb(200, 10, 20)", "error colour from --jp-error-color1");
  equal(root.querySelector(".torq-progress__status").textContent, "failed at searching", "status words");
  cleanup();
});

test("colours follow JupyterLab theme variables", async (host) => {
  host.style.setProperty("--jp-brand-color1", "rgb(1, 2, 3)");
  host.style.setProperty("--jp-success-color1", "rgb(4, 5, 6)");
  host.style.setProperty("--jp-ui-font-color1", "rgb(250, 250, 250)");
  const { model, root, cleanup } = mount(host);
  const fill = root.querySelector(".torq-progress__fill");
  equal(getComputedStyle(fill).backgroundColor, "rgb(1, 2, 3)", "running bar uses --jp-brand-color1");
  equal(getComputedStyle(root).color, "rgb(250, 250, 250)", "text uses --jp-ui-font-color1 (dark theme)");
  push(model, { state: "complete", percent: 100 });
  await settle();
  equal(getComputedStyle(fill).backgroundColor, "rgb(4, 5, 6)", "complete bar uses --jp-success-color1");
  cleanup();
});

test("without theme variables the fallbacks apply", async (host) => {
  host.style.color = "rgb(10, 20, 30)";
  const { root, cleanup } = mount(host);
  equal(getComputedStyle(root.querySelector(".torq-progress__fill")).backgroundColor, "rgb(30, 136, 229)", "fallback accent");
  equal(getComputedStyle(root).color, "rgb(10, 20, 30)", "text inherits the page colour");
  cleanup();
});

test("durations format like tqdm", async () => {
  equal(formatDuration(0), "00:00", "zero");
  equal(formatDuration(65.9), "01:05", "minutes");
  equal(formatDuration(3725), "1:02:05", "hours");
  equal(formatDuration(null), "--:--", "unknown");
  equal(formatDuration(-1), "--:--", "negative");
});

test("a Cancel button shows only for a cancellable running operation and asks the kernel once", async (host) => {
  const { model, root, cleanup } = mount(host, { cancellable: true });
  const button = root.querySelector(".torq-progress__cancel");
  assert(button && !button.hidden, "the Cancel button is visible while running");
  button.click();
  button.click();
  equal(JSON.stringify(model.sent), JSON.stringify([{ type: "cancel" }]), "one cancel message sent");
  assert(button.disabled, "the button is disabled once clicked");
  push(model, { state: "cancelled" });
  await settle();
  assert(button.hidden, "the button hides once the operation ended");
  cleanup();
});

test("no Cancel button when the operation cannot be cancelled", async (host) => {
  const { root, cleanup } = mount(host, { cancellable: false });
  assert(root.querySelector(".torq-progress__cancel").hidden, "hidden without on_cancel");
  cleanup();
});

test("a blocked run shows how to stop it instead of a Cancel button", async (host) => {
  const hintText = "This cell is busy with the run: to stop it, interrupt the kernel.";
  const { model, root, cleanup } = mount(host, { cancellable: false, stop_hint: hintText });
  const hint = root.querySelector(".torq-progress__hint");
  assert(root.querySelector(".torq-progress__cancel").hidden, "no Cancel button");
  assert(!hint.hidden, "the hint is shown while running");
  equal(hint.textContent, hintText, "hint text");
  push(model, { state: "cancelled" });
  await settle();
  assert(hint.hidden, "the hint hides once the run ended");
  model.update({ stop_hint: "" });
  cleanup();
});

test("the Cancel button and the hint follow the view options", async (host) => {
  const { model, root, cleanup } = mount(host, { cancellable: true });
  const button = root.querySelector(".torq-progress__cancel");
  const hint = root.querySelector(".torq-progress__hint");
  assert(!button.hidden && hint.hidden, "Cancel shown, no hint");
  model.update({ cancellable: false, stop_hint: "interrupt the kernel" });
  await settle();
  assert(button.hidden && !hint.hidden, "hint shown instead of Cancel");
  cleanup();
});
