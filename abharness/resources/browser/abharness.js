/*
 * abharness.js: browser events for an abharness proxy. No dependencies; served by the proxy at /static/abharness.js.
 *
 * A results page includes it and marks each shown result with the fields of the /search response:
 *
 *   <li data-abh-token="{impression_token}" data-abh-doc="{doc_id}" data-abh-position="{position}">...</li>
 *
 * then calls AbHarness.track(container) after rendering. The script sends, batched to POST /events:
 *   - "click": when a marked result (or anything inside it) is clicked, flushed at once (the page is usually leaving);
 *   - "dwell": when the user comes back to the page after a click (back button, tab shown again), the time away;
 *   - "seen":  once per result, when at least half of it was scrolled into view (IntersectionObserver).
 * Batches leave when `batchSize` events are queued, after `flushIntervalMs`, and on pagehide / tab hidden, with
 * navigator.sendBeacon (a text/plain JSON body, which the proxy accepts) or fetch(keepalive) where there is none.
 *
 * The proxy's address is taken from this script's own src (or data-endpoint on the script tag, or
 * AbHarness.configure({endpoint})). AbHarness.search(query, {k, offset, page, pageToken, unitId, unitSig, context})
 * calls POST /search with the browser's cookies (the proxy-issued session cookie) and resolves to the JSON response;
 * with unit_auth: signed, pass the unitId and unitSig your backend rendered into the page.
 */
(function (global) {
  "use strict";
  var script = document.currentScript;
  var cfg = {
    endpoint: script && script.src ? new URL(script.src, global.location.href).origin : "",
    batchSize: 20,
    flushIntervalMs: 5000,
    seenThreshold: 0.5,
    maxDwellMs: 6 * 3600 * 1000,
    storageKey: "abharness.pendingDwell"
  };
  if (script && script.getAttribute("data-endpoint")) cfg.endpoint = script.getAttribute("data-endpoint");

  var queue = [];
  var seen = {};
  var timer = null;
  var observer = null;
  var sent = 0;

  function url(path) { return cfg.endpoint.replace(/\/$/, "") + path; }

  function configure(options) {
    for (var key in options || {}) if (Object.prototype.hasOwnProperty.call(options, key)) cfg[key] = options[key];
    return cfg;
  }

  function search(query, options) {
    options = options || {};
    var body = { query: query };
    if (options.k) body.k = options.k;
    if (options.offset) body.offset = options.offset;
    if (options.page) body.page = options.page;
    if (options.unitId) body.unit_id = options.unitId;
    if (options.unitSig) body.unit_sig = options.unitSig;
    if (options.pageToken) body.page_token = options.pageToken;
    if (options.context) body.context = options.context;
    return fetch(url("/search"), {
      method: "POST", credentials: "include", headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().then(function (json) {
        if (!resp.ok) {
          var err = new Error(json.detail || resp.statusText);
          err.response = json;
          throw err;
        }
        return json;
      });
    });
  }

  function schedule() {
    if (timer === null) timer = setTimeout(function () { timer = null; flush(); }, cfg.flushIntervalMs);
  }

  function push(event) {
    queue.push(event);
    if (queue.length >= cfg.batchSize) flush(); else schedule();
  }

  function flush() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (!queue.length) return true;
    var batch = queue.splice(0, queue.length);
    var data = JSON.stringify({ events: batch });
    var ok = false;
    if (navigator.sendBeacon) {
      try { ok = navigator.sendBeacon(url("/events"), data); } catch (e) { ok = false; }
    }
    if (!ok) {
      try {
        fetch(url("/events"), {
          method: "POST", body: data, keepalive: true, credentials: "include",
          headers: { "content-type": "text/plain" }
        });
        ok = true;
      } catch (e) {
        queue = batch.concat(queue);  // keep them for the next flush
        return false;
      }
    }
    sent += batch.length;
    return ok;
  }

  function fields(el) {
    return {
      impression_token: el.getAttribute("data-abh-token"),
      doc_id: el.getAttribute("data-abh-doc"),
      position: parseInt(el.getAttribute("data-abh-position"), 10)
    };
  }

  function onSeen(entries) {
    for (var i = 0; i < entries.length; i++) {
      var entry = entries[i];
      if (!entry.isIntersecting || entry.intersectionRatio < cfg.seenThreshold) continue;
      observer.unobserve(entry.target);
      var f = fields(entry.target);
      var key = f.impression_token + "\u001f" + f.doc_id;
      if (seen[key]) continue;
      seen[key] = true;
      push({ type: "seen", impression_token: f.impression_token, doc_id: f.doc_id, position: f.position });
    }
  }

  function track(root) {
    root = root || document;
    if (!observer && "IntersectionObserver" in global) {
      observer = new IntersectionObserver(onSeen, { threshold: [cfg.seenThreshold] });
    }
    if (!observer) return;
    var els = root.querySelectorAll("[data-abh-doc]");
    for (var i = 0; i < els.length; i++) observer.observe(els[i]);
  }

  function onClick(e) {
    var el = e.target && e.target.closest ? e.target.closest("[data-abh-doc]") : null;
    if (!el) return;
    var f = fields(el);
    push({ type: "click", impression_token: f.impression_token, doc_id: f.doc_id, position: f.position });
    try {
      global.sessionStorage.setItem(cfg.storageKey, JSON.stringify({
        t: Date.now(), page: global.location.href, token: f.impression_token, doc: f.doc_id, pos: f.position
      }));
    } catch (err) { /* storage disabled: no dwell for this click */ }
    flush();
  }

  function comeBack() {
    var raw = null;
    try { raw = global.sessionStorage.getItem(cfg.storageKey); } catch (e) { return; }
    if (!raw) return;
    var p = null;
    try { p = JSON.parse(raw); } catch (e) { p = null; }
    if (p && p.page !== global.location.href) return;  // not back on the results page yet
    global.sessionStorage.removeItem(cfg.storageKey);
    if (!p) return;
    var dwell = Date.now() - p.t;
    if (!(dwell >= 0) || dwell > cfg.maxDwellMs) return;
    push({ type: "dwell", impression_token: p.token, doc_id: p.doc, position: p.pos, dwell_ms: dwell });
    flush();
  }

  document.addEventListener("click", onClick, true);
  global.addEventListener("pagehide", flush);
  global.addEventListener("pageshow", comeBack);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(); else comeBack();
  });
  comeBack();

  global.AbHarness = {
    configure: configure, search: search, track: track, flush: flush,
    stats: function () { return { queued: queue.length, sent: sent }; }
  };
})(window);
