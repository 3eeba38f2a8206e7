// A tiny test harness for the widget's front-end, run in a real browser by tests/test_widget_frontend.py.
// Each test gets a fresh host element; results land in window.__torqResults as {name, ok, error}.

const tests = [];

export function test(name, fn) {
  tests.push({ name, fn });
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export function equal(actual, expected, message) {
  if (actual !== expected) throw new Error(`${message}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/** Resolve once check() returns truthy; fail after timeoutMs (a bound, not a measurement). */
export async function waitFor(check, message, timeoutMs = 5000) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting: ${message}`);
}

/** Let queued microtasks (the widget's batched redraw) run. */
export const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Intervals currently running, tracked by wrapping the page's setInterval/clearInterval. */
export const activeIntervals = new Set();
const realSetInterval = window.setInterval.bind(window);
const realClearInterval = window.clearInterval.bind(window);
window.setInterval = (fn, ms, ...args) => {
  const id = realSetInterval(fn, ms, ...args);
  activeIntervals.add(id);
  return id;
};
window.clearInterval = (id) => {
  activeIntervals.delete(id);
  realClearInterval(id);
};

/** The page's clock as the widget reads it (performance.now), moved forward by advanceClock(). */
let clockOffset = 0;
const realNow = performance.now.bind(performance);
performance.now = () => realNow() + clockOffset;
/** Let ``ms`` milliseconds pass for the widget at once (its 250 ms tick shows them on its next turn). */
export function advanceClock(ms) {
  clockOffset += ms;
}

/** A stand-in for anywidget's model: get/set/on/off/save_changes with change:<name> events.
 *
 * Like a real anywidget host, the widget never sees this object itself: initialize() and every render()
 * each get their own proxy() of it (anywidget's modelProxy), so nothing may be keyed by the model object. */
export class FakeModel {
  constructor(state) {
    this.state = { ...state };
    this.listeners = new Map();
  }
  get(name) {
    return this.state[name];
  }
  set(name, value) {
    this.update({ [name]: value });
  }
  /** Apply several fields at once, like one comm message: one change:<name> event per changed field. */
  update(fields) {
    const changed = Object.keys(fields).filter((name) => this.state[name] !== fields[name]);
    Object.assign(this.state, fields);
    for (const name of changed) {
      for (const callback of [...(this.listeners.get(`change:${name}`) || [])]) callback();
    }
  }
  on(event, callback) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(callback);
  }
  off(event, callback) {
    this.listeners.get(event)?.delete(callback);
  }
  save_changes() {}
  /** Custom messages the view sends to the kernel, recorded in order. */
  send(content) {
    (this.sent ||= []).push(content);
  }
  /** A fresh object bound to this model, as anywidget hands to initialize() and to each render(). */
  proxy() {
    return {
      get: (name) => this.get(name),
      set: (name, value) => this.set(name, value),
      save_changes: () => this.save_changes(),
      send: (content) => this.send(content),
      on: (event, callback) => this.on(event, callback),
      off: (event, callback) => this.off(event, callback),
    };
  }
  listenerCount() {
    let count = 0;
    for (const set of this.listeners.values()) count += set.size;
    return count;
  }
}

export async function run() {
  const results = [];
  for (const { name, fn } of tests) {
    const host = document.createElement("div");
    host.className = "test-host";
    document.body.append(host);
    try {
      await fn(host);
      results.push({ name, ok: true, error: null });
    } catch (error) {
      results.push({ name, ok: false, error: String(error && error.stack ? error.stack : error) });
    } finally {
      host.remove();
    }
  }
  window.__torqResults = results;
}
