// Front-end tests of js/src/batch.js against a fake anywidget model, in a real browser.
import widget from "../src/batch.js";
import { FakeModel, activeIntervals, assert, equal, settle, test } from "./harness.js";

const HOSTILE = "<img src=x onerror=\"window.__pwned=1\">";

function item(key, state, extra = {}) {
  return { key, state, stage: state === "running" ? "extracting" : null, done: 3, total: 10, failed: 0, reason: null, ...extra };
}

/** A BatchTracker.status() snapshot of 5,000 topics: 12 running (8 listed), some failed. */
function view(overrides = {}) {
  return {
    operation: "research_many: 5,000 topics", operation_id: "b1", state: "running", message: null, unit: "pages",
    total: 5000, ended: 1200, states: { pending: 3788, running: 12, complete: 1180, failed: 20, cancelled: 0 },
    stages: { searching: 4, extracting: 7, synthesizing: 1 }, units: 9000, units_failed: 40, rate: 12.5,
    unit_rate: 90.2, eta: 304, duration: 96, started_at: null, percent: 24,
    running: Array.from({ length: 8 }, (_, i) => item(`running topic ${i}`, "running")),
    recent: [item("done topic", "complete"), item("failed topic", "failed", { reason: "HTTP 403" })],
    failures: [item("failed topic", "failed", { reason: "HTTP 403" })],
    ...overrides,
  };
}

function mount(host, state) {
  const model = new FakeModel({ view: view(), cancellable: true, ...state });
  const stop = widget.render({ model: model.proxy(), el: host });
  return { model, stop };
}

test("counts, stage chips and capped lists describe 5,000 topics in a few lines", async (host) => {
  const { stop } = mount(host);
  await settle();
  const text = host.textContent;
  assert(text.includes("1,200/5,000 topics") && text.includes("20 failed") && text.includes("9,000 pages read"), text);
  assert(/ETA 05:0\d/.test(text), text);  // 304 s, ticking down locally
  const chips = [...host.querySelectorAll(".torq-batch__chip")].map((chip) => chip.textContent);
  equal(chips.join(" "), "searching4 extracting7 synthesizing1 pending3,788 complete1,180 failed20", "the chips");
  assert(text.includes("Running (12)") && text.includes("+4 more running"), text);
  assert(text.includes("Failed (20)") && text.includes("+19 more: see results.summaries"), text);
  equal(host.querySelectorAll(".torq-batch__item").length, 8 + 1 + 1, "listed topics: 8 running, 1 failed, 1 finished");
  stop();
});

test("topic names and reasons are text, never markup", async (host) => {
  const hostile = item(HOSTILE, "failed", { reason: `<script>window.__pwned=2</script>${HOSTILE}` });
  const { stop } = mount(host, { view: view({ operation: HOSTILE, running: [item(HOSTILE, "running")], failures: [hostile], recent: [hostile] }) });
  await settle();
  equal(host.querySelectorAll("img, script").length, 0, "elements made from page text");
  assert(host.textContent.includes(HOSTILE), "the names are shown as they are");
  await new Promise((resolve) => setTimeout(resolve, 50));
  equal(window.__pwned, undefined, "script ran");
  stop();
});

test("Cancel asks the kernel once and goes away when the batch ends; the clock stops", async (host) => {
  const { model, stop } = mount(host);
  await settle();
  const button = host.querySelector(".torq-batch__cancel");
  assert(!button.hidden, "Cancel shown while running");
  button.click();
  equal(JSON.stringify(model.sent), JSON.stringify([{ type: "cancel" }]), "messages sent");
  assert(button.disabled, "the button waits for the kernel");
  model.update({ view: view({ state: "cancelled", ended: 5000, eta: null, running: [] }) });
  await settle();
  assert(button.hidden, "no Cancel once the batch ended");
  assert(!host.textContent.includes("Running ("), "no running list at the end");
  equal(activeIntervals.size, 0, "intervals left running at the end");
  stop();
  equal(model.listenerCount(), 0, "listeners left after the view was removed");
  equal(host.children.length, 0, "elements left after the view was removed");
});
